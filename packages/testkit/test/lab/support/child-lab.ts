/**
 * A test process that starts a one-host lab, prints what the test needs to find its traces,
 * and waits to be killed (SIGKILL: the "test run killed" case; SIGTERM: the exit handlers).
 */
import { startLab } from '@fleetward/testkit/lab';

const lab = await startLab({ hosts: [{ name: 'child1', flavour: 'debian' }], users: [] });
const host = lab.hosts[0];
process.stdout.write(
  `${JSON.stringify({ id: lab.id, address: host?.address, netns: `fwlab-${lab.id}-child1` })}\n`,
);
setInterval(() => {}, 1 << 30);
