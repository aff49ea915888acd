import { packageConfig } from '../../tsup.config.base.ts';

// An entry object, so the lab lands in dist/lab/ (the `./lab` export and the `fleetward-lab` bin)
// the AWS fake in dist/aws/ (the `./aws` export), the WinRM fake in dist/winrm/ (`./winrm`) and the
// simulated fleet in dist/sim/ (`./sim`).
export default packageConfig({
  entry: {
    index: 'src/index.ts',
    'lab/index': 'src/lab/index.ts',
    'lab/bin': 'src/lab/bin.ts',
    'aws/index': 'src/aws/index.ts',
    'winrm/index': 'src/winrm/index.ts',
    'sim/index': 'src/sim/index.ts',
  },
});
