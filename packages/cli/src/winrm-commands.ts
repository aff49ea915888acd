import { WinRmCredentialsSchema } from '@fleetward/adapter-winrm';
import { ValidationError } from '@fleetward/core';
import { type Command, InvalidArgumentError } from 'commander';
import type { CommandDeps } from './deps.js';
import { WINRM_CREDENTIALS_LABEL, WINRM_CREDENTIALS_NAME, winRmCredentialsRef } from './winrm.js';

interface SetCredentialsOptions {
  username: string;
  domain?: string;
  passwordEnv?: string;
  passwordStdin?: boolean;
}

/**
 * The password `credentials set` stores: from the variable `--password-env` names or from stdin
 * (its last line break removed), never from the command line, where `ps` and the shell history
 * would keep it.
 * @throws InvalidArgumentError (a usage error) naming the flag.
 */
async function passwordFrom(o: SetCredentialsOptions, deps: CommandDeps): Promise<string> {
  if ((o.passwordEnv === undefined) === (o.passwordStdin !== true))
    throw new InvalidArgumentError(
      'choose where the password comes from: --password-env <NAME> or --password-stdin (never the command line)',
    );
  if (o.passwordEnv !== undefined) {
    const password = deps.env[o.passwordEnv];
    if (!password)
      throw new InvalidArgumentError(
        `--password-env: the environment variable ${JSON.stringify(o.passwordEnv)} is not set or empty`,
      );
    return password;
  }
  const password = (await deps.readStdin()).replace(/\r?\n$/, '');
  if (!password) throw new InvalidArgumentError('--password-stdin: standard input held no password');
  return password;
}

/** `winrm credentials set`: Windows logins in the secret store, for the WinRM adapter. */
export function registerWinRmCommands(program: Command, deps: CommandDeps): void {
  const { withContext, print } = deps;
  const winrm = program.command('winrm').description('Windows servers reached over WinRM.');
  const credentials = winrm
    .command('credentials')
    .description('Windows logins, kept in the secret store and named by a reference.');

  credentials
    .command('set <name>')
    .description(
      `Store (or replace) a Windows login in the secret store as <tenant>/winrm/<name>; servers use it by the label ${WINRM_CREDENTIALS_LABEL}=<name>, or by winrm.credentialsRef.`,
    )
    .requiredOption('--username <user>', 'the account, e.g. Administrator or CORP\\fleetward')
    .option('--domain <domain>', 'NTLM domain (else the part before \\ of the username)')
    .option(
      '--password-env <name>',
      'the environment variable holding the password (never the password itself)',
    )
    .option('--password-stdin', 'read the password from standard input')
    .action(async (name: string, o: SetCredentialsOptions) => {
      if (!WINRM_CREDENTIALS_NAME.test(name))
        throw new InvalidArgumentError(
          '<name>: a label value: letters, digits and . _ - (at most 63), starting and ending with a letter or digit',
        );
      const password = await passwordFrom(o, deps);
      const document = {
        username: o.username,
        password,
        ...(o.domain !== undefined ? { domain: o.domain } : {}),
      };
      const parsed = WinRmCredentialsSchema.safeParse(document);
      if (!parsed.success) {
        // zod's messages state the expectation, never the input.
        const [issue] = parsed.error.issues;
        const field = String(issue?.path[0] ?? '');
        const flag =
          field === 'password' ? (o.passwordEnv ? '--password-env' : '--password-stdin') : `--${field}`;
        throw new InvalidArgumentError(`${flag}: ${issue?.message ?? 'is invalid'}`);
      }
      await withContext(async ({ fleet, config }) => {
        if (!fleet.secrets) {
          const passphraseEnv = config.secrets?.passphraseEnv;
          throw new ValidationError('WinRM credentials', [
            {
              path: ['secrets'],
              message: passphraseEnv
                ? `Fleetward keeps Windows logins only in its secret store, whose passphrase is read from ${passphraseEnv}: set that variable`
                : 'Fleetward keeps Windows logins only in its secret store: set "secrets" in the configuration file (a SQLite store has one beside it)',
            },
          ]);
        }
        const ref = winRmCredentialsRef(config.tenant, name);
        await fleet.secrets.set(ref, JSON.stringify(parsed.data));
        print(
          { name, ref, username: parsed.data.username },
          {
            human: (r) =>
              `Stored the WinRM login of ${r.username} as ${r.ref}.\nUse it with: fleetward servers add <id> --provider winrm --address <host> -l ${WINRM_CREDENTIALS_LABEL}=${r.name} (or "credentialsRef": "${r.ref}" in the winrm section of the configuration).`,
            ids: (r) => [r.ref],
          },
        );
      });
    });
}
