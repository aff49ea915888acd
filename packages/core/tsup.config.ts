import { packageConfig } from '../../tsup.config.base.ts';

// One entry per subpath export (see package.json "exports"); shared code is split into chunks.
export default packageConfig({
  entry: {
    index: 'src/index.ts',
    kernel: 'src/kernel/index.ts',
    ports: 'src/ports/index.ts',
    domain: 'src/domain/index.ts',
    os: 'src/os/index.ts',
    audit: 'src/audit/index.ts',
  },
});
