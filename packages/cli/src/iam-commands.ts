import { readFile } from 'node:fs/promises';
import { NotFoundError, type Principal, type Role, type RoleBinding, type RoleInput } from '@fleetward/core';
import { type Command, InvalidArgumentError } from 'commander';
import { type CommandDeps, collectList } from './deps.js';
import { renderTable } from './table.js';

function bindingsTable(rows: RoleBinding[]): string {
  return renderTable(
    ['ID', 'PRINCIPAL', 'ROLE', 'PROJECTS', 'EXPIRES'],
    rows.map((b) => [
      b.id,
      b.principalId,
      b.roleId,
      b.projectIds?.join(',') ?? '(tenant-wide)',
      b.expiresAt ?? '-',
    ]),
  );
}

function rulesText(role: Role): string {
  return role.rules
    .map(
      (r) =>
        `  ${r.effect.padEnd(5)} ${r.actions.join(',')}${r.servers ? ` on ${JSON.stringify(r.servers)}` : ''}${r.scripts ? ` scripts ${r.scripts.join(',')}` : ''}${r.affiliations ? ` for ${r.affiliations.join(',')}` : ''}`,
    )
    .join('\n');
}

/** `principals`, `roles`, `bindings`: who acts in the tenant and what they may do. */
export function registerIamCommands(program: Command, deps: CommandDeps): void {
  const { withContext, print } = deps;

  const principals = program
    .command('principals')
    .alias('principal')
    .description('People and services that act in the tenant.');
  principals
    .command('list', { isDefault: true })
    .description('List principals.')
    .action(async () => {
      await withContext(async ({ session }) => {
        print(await session.iam.listPrincipals(), {
          human: (rows: Principal[]) =>
            renderTable(
              ['ID', 'NAME', 'KIND', 'AFFILIATION', 'DISABLED'],
              rows.map((p) => [p.id, p.name, p.kind, p.affiliation, p.disabled ? 'yes' : 'no']),
            ),
        });
      });
    });
  principals
    .command('show <id>')
    .description('A principal and its role bindings.')
    .action(async (id: string) => {
      await withContext(async ({ session }) => {
        const principal = await session.iam.getPrincipal(id);
        const bindings = await session.iam.listBindings({ principalId: id });
        print(
          { ...principal, bindings },
          {
            human: (p) =>
              `Principal ${p.id} (${p.name}), ${p.kind}, ${p.affiliation}${p.disabled ? ', DISABLED' : ''}${p.email ? `, ${p.email}` : ''}\n${
                p.bindings.length
                  ? bindingsTable(p.bindings)
                  : `No roles. Give one with: fleetward bindings add ${p.id} --role <role-id>`
              }`,
          },
        );
      });
    });
  principals
    .command('add <id>')
    .description('Add a person (default) or a service, optionally with a role.')
    .requiredOption('--name <name>', 'display name')
    .option('--email <address>', 'e-mail address')
    .option('--contractor', 'an external contractor rather than an employee')
    .option('--service', 'a service account rather than a human')
    .option('--role <roleId>', 'bind this role tenant-wide (see "fleetward roles list")')
    .action(
      async (
        id: string,
        o: { name: string; email?: string; contractor?: boolean; service?: boolean; role?: string },
      ) => {
        await withContext(async ({ session }) => {
          const principal = await session.iam.addPrincipal({
            id,
            name: o.name,
            kind: o.service ? 'service' : 'human',
            affiliation: o.contractor ? 'contractor' : 'employee',
            ...(o.email ? { email: o.email } : {}),
          });
          const binding = o.role ? await session.iam.bindRole(id, o.role) : undefined;
          print(
            { ...principal, bindings: binding ? [binding] : [] },
            {
              human: (p) =>
                binding
                  ? `Added ${p.id} with role ${binding.roleId}.`
                  : `Added ${p.id} (no role yet: fleetward bindings add ${p.id} --role <role-id>).`,
            },
          );
        });
      },
    );
  principals
    .command('remove <id>')
    .alias('rm')
    .description('Remove a principal with its role bindings and API tokens (its history stays).')
    .action(async (id: string) => {
      await withContext(async ({ session }) => {
        const removed = await session.iam.removePrincipal(id);
        if (!removed) throw new NotFoundError('principal', id);
        print({ id, removed }, { human: () => `Removed ${id}.` });
      });
    });

  const roles = program
    .command('roles')
    .alias('role')
    .description('Roles: allow and deny rules over actions.');
  roles
    .command('list', { isDefault: true })
    .description('List roles.')
    .action(async () => {
      await withContext(async ({ session }) => {
        print(await session.iam.listRoles(), {
          human: (rows: Role[]) =>
            renderTable(
              ['ID', 'NAME', 'RULES'],
              rows.map((r) => [
                r.id,
                r.name,
                r.rules.map((x) => `${x.effect} ${x.actions.join(',')}`).join('; '),
              ]),
            ),
        });
      });
    });
  roles
    .command('show <id>')
    .description('A role with its rules.')
    .action(async (id: string) => {
      await withContext(async ({ session }) => {
        print(await session.iam.getRole(id), {
          human: (r: Role) =>
            `Role ${r.id} (${r.name})${r.description ? `: ${r.description}` : ''}\n${rulesText(r)}`,
        });
      });
    });
  roles
    .command('add <id>')
    .description(
      'Add a role: --allow and --deny action lists (patch.approve, patch.*, *), or --file with the full role as JSON (rules limited to servers, scripts, affiliations).',
    )
    .option('--name <name>', 'display name (default: the id)')
    .option('--description <text>', 'what it is for')
    .option('--allow <actions>', 'allowed actions (repeatable, or comma-separated)', collectList)
    .option('--deny <actions>', 'denied actions (repeatable, or comma-separated)', collectList)
    .option('--file <path>', 'a JSON file with {name, description, rules}')
    .action(
      async (
        id: string,
        o: { name?: string; description?: string; allow?: string[]; deny?: string[]; file?: string },
      ) => {
        let input: Omit<RoleInput, 'tenantId'>;
        if (o.file) {
          if (o.allow || o.deny)
            throw new InvalidArgumentError('--file cannot be combined with --allow or --deny');
          const parsed = JSON.parse(await readFile(o.file, 'utf8')) as Omit<RoleInput, 'tenantId' | 'id'>;
          input = { ...parsed, id, name: o.name ?? parsed.name ?? id };
        } else {
          const rules: RoleInput['rules'] = [];
          if (o.allow?.length) rules.push({ effect: 'allow', actions: o.allow });
          if (o.deny?.length) rules.push({ effect: 'deny', actions: o.deny });
          if (!rules.length) throw new InvalidArgumentError('give --allow and/or --deny actions, or --file');
          input = { id, name: o.name ?? id, rules, ...(o.description ? { description: o.description } : {}) };
        }
        await withContext(async ({ session }) => {
          print(await session.iam.addRole(input), {
            human: (r: Role) => `Added role ${r.id}.\n${rulesText(r)}`,
          });
        });
      },
    );
  roles
    .command('remove <id>')
    .alias('rm')
    .description('Remove a role no binding uses.')
    .action(async (id: string) => {
      await withContext(async ({ session }) => {
        const removed = await session.iam.removeRole(id);
        if (!removed) throw new NotFoundError('role', id);
        print({ id, removed }, { human: () => `Removed role ${id}.` });
      });
    });

  const bindings = program
    .command('bindings')
    .alias('binding')
    .description('Role bindings: which principal has which role, where.');
  bindings
    .command('list', { isDefault: true })
    .description('List role bindings.')
    .option('--principal <id>', 'only this principal’s')
    .option('--role <id>', 'only this role’s')
    .action(async (o: { principal?: string; role?: string }) => {
      await withContext(async ({ session }) => {
        const rows = await session.iam.listBindings({
          ...(o.principal ? { principalId: o.principal } : {}),
          ...(o.role ? { roleId: o.role } : {}),
        });
        print(rows, { human: bindingsTable });
      });
    });
  bindings
    .command('add <principal>')
    .description('Give a principal a role, tenant-wide or for some projects.')
    .requiredOption('--role <id>', 'the role')
    .option(
      '--project <ids>',
      'only the servers of these projects (repeatable, or comma-separated)',
      collectList,
    )
    .action(async (principal: string, o: { role: string; project?: string[] }) => {
      await withContext(async ({ session }) => {
        const binding = await session.iam.bindRole(
          principal,
          o.role,
          o.project?.length ? { projectIds: o.project } : {},
        );
        print(binding, {
          human: (b) =>
            `Bound ${b.roleId} to ${b.principalId}${b.projectIds ? ` for ${b.projectIds.join(', ')}` : ' tenant-wide'} (binding ${b.id}).`,
        });
      });
    });
  bindings
    .command('remove <bindingId>')
    .alias('rm')
    .description('Remove a role binding (ids: fleetward bindings list).')
    .action(async (id: string) => {
      await withContext(async ({ session }) => {
        const removed = await session.iam.unbindRole(id);
        if (!removed) throw new NotFoundError('role binding', id);
        print({ id, removed }, { human: () => `Removed binding ${id}.` });
      });
    });
}
