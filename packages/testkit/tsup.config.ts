import { packageConfig } from '../../tsup.config.base.ts';

// An entry object, so the lab lands in dist/lab/ (the `./lab` export and the `fleetward-lab` bin)
// and the AWS fake in dist/aws/ (the `./aws` export).
export default packageConfig({
  entry: {
    index: 'src/index.ts',
    'lab/index': 'src/lab/index.ts',
    'lab/bin': 'src/lab/bin.ts',
    'aws/index': 'src/aws/index.ts',
  },
});
