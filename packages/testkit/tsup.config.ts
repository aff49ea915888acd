import { packageConfig } from '../../tsup.config.base.ts';

// An entry object, so the lab lands in dist/lab/ (the `./lab` export and the `fleetward-lab` bin)
// the AWS fake in dist/aws/ (the `./aws` export) and the WinRM fake in dist/winrm/ (`./winrm`).
export default packageConfig({
  entry: {
    index: 'src/index.ts',
    'lab/index': 'src/lab/index.ts',
    'lab/bin': 'src/lab/bin.ts',
    'aws/index': 'src/aws/index.ts',
    'winrm/index': 'src/winrm/index.ts',
  },
});
