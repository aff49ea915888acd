import { z } from 'zod';
import {
  type EntityInputs,
  IdSchema,
  type Principal,
  type Role,
  type RoleBinding,
  type RoleInput,
  validate,
} from '../domain/index.js';
import { checkEntityInput, objectArgument, validateOptions } from '../domain/options.js';
import { ConflictError, NotFoundError } from '../errors.js';
import type { CallContext } from '../kernel/context.js';
import type { StoreScope } from '../ports/store.js';

/** The built-in role a bootstrapped tenant's first admin gets: every action on everything of the tenant. */
export const TENANT_ADMIN_ROLE_ID = 'tenant-admin';

const BindRoleOptionsSchema = z.strictObject({
  /** Limit the binding to servers of these projects; absent means tenant-wide. */
  projectIds: z.array(IdSchema).min(1).max(1000).optional(),
});
/**
 * Options of `iam.bindRole`.
 *
 * @useDeclaredType
 */
export type BindRoleOptions = z.input<typeof BindRoleOptionsSchema>;

const ListBindingsOptionsSchema = z.strictObject({
  /** Only the bindings of this principal. */
  principalId: IdSchema.optional(),
  /** Only the bindings of this role. */
  roleId: IdSchema.optional(),
});
/**
 * Options of `iam.listBindings`; both filters together select the bindings matching both.
 *
 * @useDeclaredType
 */
export type ListBindingsOptions = z.input<typeof ListBindingsOptionsSchema>;

/**
 * Principals of the tenant, roles and role bindings. Every call needs `iam.read` or `iam.write`
 * and is audited, allowed or denied. No call can leave the tenant without a standing tenant admin:
 * an enabled principal bound tenant-wide, without expiry, to the built-in `tenant-admin` role.
 */
export interface IamApi {
  /**
   * Adds a principal (a human, a service or an API client).
   * @throws ValidationError; AlreadyExistsError for a taken id; AuthorizationError.
   */
  addPrincipal(input: Omit<EntityInputs['principals'], 'tenantId'>): Promise<Principal>;
  /**
   * The principal with this id.
   * @throws NotFoundError when there is none; ValidationError for a malformed id; AuthorizationError.
   */
  getPrincipal(id: string): Promise<Principal>;
  /** Every principal of the tenant. @throws AuthorizationError. */
  listPrincipals(): Promise<Principal[]>;
  /**
   * Removes a principal with its role bindings and revokes its API tokens, in one transaction, so
   * that nothing it held passes to a principal added later under the same id. Its history stays:
   * audit records, access requests and grants, plans and runs it started keep naming it. It is
   * refused while it takes care of managed keys or scan schedules run as it.
   * Resolves `false` when there was none.
   * @throws ConflictError when the principal is the caller, is the last standing tenant admin, is
   * the caretaker of a managed key or the principal a scan schedule runs as (hand those over first);
   * ValidationError for a malformed id; AuthorizationError.
   */
  removePrincipal(id: string): Promise<boolean>;
  /**
   * Binds a role to a principal, tenant-wide or for some projects. Refused (`AuthorizationError`)
   * when it would widen the caller's own reach or give the principal anything the caller may not
   * do itself; unknown option fields (`tenantId` among them) are a `ValidationError`.
   * @throws NotFoundError when the principal or the role does not exist.
   */
  bindRole(principalId: string, roleId: string, options?: BindRoleOptions): Promise<RoleBinding>;
  /**
   * The tenant's role bindings, all of them or those of one principal and/or one role.
   * @throws ValidationError for unknown options or a malformed id; AuthorizationError.
   */
  listBindings(options?: ListBindingsOptions): Promise<RoleBinding[]>;
  /**
   * Removes a role binding. Removing a binding takes its allow rules away, and also its deny
   * rules: so it is refused (`AuthorizationError`, audited as a deny) like `bindRole` when lifting
   * a deny would widen the caller's own reach or give the principal anything the caller may not do
   * itself. Resolves `false` when there was none.
   * @throws ConflictError when it is the last standing tenant-admin binding of the tenant, or when
   * it belongs to an access grant (end that with `access.revoke`); ValidationError for a malformed
   * id; AuthorizationError.
   */
  unbindRole(bindingId: string): Promise<boolean>;
  /**
   * Adds a role: a list of allow and deny rules over actions (`patch.plan`, `patch.*`, `*`),
   * optionally limited to servers, scripts, affiliations or recent MFA. A role may name any
   * action, also ones the caller may not do: creating it grants nothing, and `bindRole` is where
   * that is checked (it refuses to give anyone, the caller included, anything the caller may not
   * do itself).
   * @throws ValidationError for input that does not fit the role schema; AlreadyExistsError for a
   * taken id; ConflictError when bindings already name the id (they would take effect unchecked);
   * AuthorizationError.
   */
  addRole(input: Omit<RoleInput, 'tenantId'>): Promise<Role>;
  /**
   * The role with this id.
   * @throws NotFoundError when there is none; ValidationError for a malformed id; AuthorizationError.
   */
  getRole(id: string): Promise<Role>;
  /** Every role of the tenant, the built-in and just-in-time ones included. @throws AuthorizationError. */
  listRoles(): Promise<Role[]>;
  /**
   * Removes a role that no binding uses. Resolves `false` when there was none.
   * @throws ConflictError for the built-in `tenant-admin` role, or while bindings use the role (the
   * error names their principals); ValidationError for a malformed id; AuthorizationError.
   */
  removeRole(id: string): Promise<boolean>;
}

/**
 * The bindings that keep the tenant administrable: the built-in tenant-admin role, tenant-wide and
 * without expiry, of an enabled principal. A project-bound binding leaves the rest of the tenant
 * out, an expiring one lapses, and a disabled principal is denied everything.
 */
async function standingAdminBindings(tx: StoreScope, tenantId: string): Promise<RoleBinding[]> {
  const bindings = await tx.roleBindings.listAll(tenantId, { where: { roleId: TENANT_ADMIN_ROLE_ID } });
  const standing = bindings.filter((b) => !b.projectIds && !b.expiresAt);
  const enabled = new Set<string>();
  for (const principalId of new Set(standing.map((b) => b.principalId))) {
    const principal = await tx.principals.get(tenantId, principalId);
    if (principal && !principal.disabled) enabled.add(principalId);
  }
  return standing.filter((b) => enabled.has(b.principalId));
}

/**
 * Refuses a change that removes the bindings `removed` picks when no standing tenant admin would
 * be left. Call it in the transaction that removes them.
 * @throws ConflictError naming the tenant and what would be removed.
 */
async function refuseLockout(
  tx: StoreScope,
  tenantId: string,
  removed: (binding: RoleBinding) => boolean,
  what: string,
): Promise<void> {
  // Reading the head of the tenant's audit chain in a transaction locks the chain until commit
  // (every write of the tenant appends to it), so two removals at once cannot each count the
  // other's admin as the one left.
  await tx.audit.headRow(tenantId);
  const standing = await standingAdminBindings(tx, tenantId);
  if (standing.some(removed) && !standing.some((b) => !removed(b))) {
    throw new ConflictError(
      `removing ${what} would leave tenant ${tenantId} without a tenant admin (a principal bound tenant-wide to ${TENANT_ADMIN_ROLE_ID} without expiry); bind another one first`,
      { retryable: false },
    );
  }
}

/** Ids for an error message, sorted: the first ten, and how many more. */
function named(ids: Iterable<string>): string {
  const all = [...new Set(ids)].sort();
  return all.length > 10 ? `${all.slice(0, 10).join(', ')} and ${all.length - 10} more` : all.join(', ');
}

/** The access grant whose just-in-time role binding this is, if any (its role is `jit-<grantId>`). */
async function grantOf(tx: StoreScope, tenantId: string, binding: RoleBinding): Promise<string | undefined> {
  if (!binding.roleId.startsWith('jit-')) return undefined;
  const grantId = binding.roleId.slice('jit-'.length);
  const grant = IdSchema.safeParse(grantId).success
    ? await tx.accessGrants.get(tenantId, grantId)
    : undefined;
  return grant?.bindingId === binding.id ? grant.id : undefined;
}

/** Creates the IAM module on a call context. */
export function createIamApi(ctx: CallContext): IamApi {
  const store = () => ctx.runtime.store;

  return {
    addPrincipal: async (input: Omit<EntityInputs['principals'], 'tenantId'>) =>
      objectArgument(input, 'Principal') &&
      ctx.write('iam.write', [{ type: 'principal' }], { type: 'principal', id: input.id ?? '(new)' }, (tx) =>
        tx.principals.create({ ...input, tenantId: ctx.tenantId } as EntityInputs['principals']),
      ),

    getPrincipal: async (id: string) => {
      validate(IdSchema, id, 'principalId');
      const principal = await ctx.read('iam.read', [{ type: 'principal' }], { type: 'principal', id }, () =>
        store().principals.get(ctx.tenantId, id),
      );
      if (!principal) throw new NotFoundError('principal', id);
      return principal;
    },

    listPrincipals: () =>
      ctx.read('iam.read', [{ type: 'principal' }], { type: 'principal', id: '*' }, () =>
        store().principals.listAll(ctx.tenantId),
      ),

    removePrincipal: async (id: string) => {
      validate(IdSchema, id, 'principalId');
      let removedBindings: RoleBinding[] = [];
      let revokedTokens: string[] = [];
      return ctx.write(
        'iam.write',
        [{ type: 'principal' }],
        { type: 'principal', id },
        async (tx) => {
          if (id === ctx.actor.principalId) {
            throw new ConflictError(`${id} may not remove itself; another principal with iam.write can`, {
              retryable: false,
            });
          }
          if (!(await tx.principals.get(ctx.tenantId, id))) return false;
          await refuseLockout(tx, ctx.tenantId, (b) => b.principalId === id, `principal ${id}`);
          // One caretaker per key, and schedules run as someone: a principal added later under
          // the same id must not silently inherit them. Hand them over first.
          const kept = await tx.credentials.listAll(ctx.tenantId, { where: { caretakerId: id } });
          const schedules = (await tx.scanSchedules.listAll(ctx.tenantId)).filter((s) => s.runAs === id);
          if (kept.length || schedules.length) {
            const what = [
              kept.length
                ? `the caretaker of ${kept.length} managed key(s) (${kept
                    .slice(0, 5)
                    .map((k) => k.id)
                    .join(', ')})`
                : '',
              schedules.length
                ? `the principal ${schedules.length} scan schedule(s) run as (${schedules
                    .slice(0, 5)
                    .map((s) => s.id)
                    .join(', ')})`
                : '',
            ].filter(Boolean);
            throw new ConflictError(
              `${id} is ${what.join(' and ')}: hand them to another principal (keys.setCaretaker, the schedule's runAs) before removing it`,
              { retryable: false },
            );
          }
          removedBindings = await tx.roleBindings.listAll(ctx.tenantId, { where: { principalId: id } });
          for (const binding of removedBindings) await tx.roleBindings.delete(ctx.tenantId, binding.id);
          const now = ctx.runtime.clock.now().toISOString();
          const tokens = await tx.apiTokens.listAll(ctx.tenantId, { where: { principalId: id } });
          revokedTokens = [];
          for (const token of tokens.filter((t) => !t.revokedAt)) {
            await tx.apiTokens.update(
              ctx.tenantId,
              token.id,
              { revokedAt: now },
              { expectedVersion: token.version },
            );
            revokedTokens.push(token.id);
          }
          return tx.principals.delete(ctx.tenantId, id);
        },
        (removed) =>
          removed
            ? {
                principalId: id,
                bindingIds: removedBindings.map((b) => b.id),
                revokedTokenIds: revokedTokens,
              }
            : { principalId: id, removed: false },
      );
    },

    bindRole: async (principalId: string, roleId: string, options: BindRoleOptions = {}) => {
      const { projectIds } = validate(BindRoleOptionsSchema, options, 'BindRoleOptions');
      return ctx.write(
        'iam.write',
        [{ type: 'role-binding' }],
        { type: 'principal', id: principalId },
        async (tx) => {
          await tx.principals.require(ctx.tenantId, principalId);
          await tx.roles.require(ctx.tenantId, roleId);
          return tx.roleBindings.create({
            principalId,
            roleId,
            ...(projectIds ? { projectIds } : {}),
            tenantId: ctx.tenantId,
          });
        },
        (b) => ({ bindingId: b.id, roleId, ...(projectIds ? { projectIds } : {}) }),
        { principals: [principalId], servers: 'all', others: true },
      );
    },

    listBindings: async (options: ListBindingsOptions = {}) => {
      const { principalId, roleId } = validateOptions(
        ListBindingsOptionsSchema,
        options,
        'ListBindingsOptions',
      );
      const where = { ...(principalId ? { principalId } : {}), ...(roleId ? { roleId } : {}) };
      return ctx.read(
        'iam.read',
        [{ type: 'role-binding' }],
        { type: 'role-binding', id: principalId ?? roleId ?? '*' },
        () => store().roleBindings.listAll(ctx.tenantId, { where }),
      );
    },

    unbindRole: async (bindingId: string) => {
      validate(IdSchema, bindingId, 'bindingId');
      const binding = await store().roleBindings.get(ctx.tenantId, bindingId);
      return ctx.write(
        'iam.write',
        [{ type: 'role-binding' }],
        { type: 'role-binding', id: bindingId },
        async (tx) => {
          // Without the binding read before, the change went unguarded: then it removes nothing.
          const current = binding && (await tx.roleBindings.get(ctx.tenantId, bindingId));
          if (!current) return false;
          const grantId = await grantOf(tx, ctx.tenantId, current);
          if (grantId) {
            throw new ConflictError(
              `role binding ${bindingId} belongs to access grant ${grantId}; end it with access.revoke`,
              { retryable: false },
            );
          }
          await refuseLockout(tx, ctx.tenantId, (b) => b.id === bindingId, `role binding ${bindingId}`);
          return tx.roleBindings.delete(ctx.tenantId, bindingId);
        },
        (removed) =>
          removed && binding
            ? {
                bindingId,
                principalId: binding.principalId,
                roleId: binding.roleId,
                ...(binding.projectIds ? { projectIds: binding.projectIds } : {}),
              }
            : { bindingId, removed: false },
        // Lifting a deny rule widens: judged on the binding's principal, as bindRole is.
        binding ? { principals: [binding.principalId], servers: 'all', others: true } : undefined,
      );
    },

    addRole: async (input: Omit<RoleInput, 'tenantId'>) => {
      checkEntityInput('roles', input, ctx.tenantId, 'RoleInput');
      return ctx.write(
        'iam.write',
        [{ type: 'role' }],
        { type: 'role', id: input.id ?? '(new)' },
        async (tx) => {
          if (input.id !== undefined) {
            const waiting = await tx.roleBindings.listAll(ctx.tenantId, { where: { roleId: input.id } });
            if (waiting.length && !(await tx.roles.get(ctx.tenantId, input.id))) {
              throw new ConflictError(
                `role bindings of ${named(waiting.map((b) => b.principalId))} already name role ${input.id}, which would take effect unchecked; unbind them first`,
                { retryable: false },
              );
            }
          }
          return tx.roles.create({ ...input, tenantId: ctx.tenantId } as RoleInput);
        },
        (role) => ({ roleId: role.id, rules: role.rules.length }),
      );
    },

    getRole: async (id: string) => {
      validate(IdSchema, id, 'roleId');
      const role = await ctx.read('iam.read', [{ type: 'role' }], { type: 'role', id }, () =>
        store().roles.get(ctx.tenantId, id),
      );
      if (!role) throw new NotFoundError('role', id);
      return role;
    },

    listRoles: () =>
      ctx.read('iam.read', [{ type: 'role' }], { type: 'role', id: '*' }, () =>
        store().roles.listAll(ctx.tenantId),
      ),

    removeRole: async (id: string) => {
      validate(IdSchema, id, 'roleId');
      return ctx.write(
        'iam.write',
        [{ type: 'role' }],
        { type: 'role', id },
        async (tx) => {
          if (id === TENANT_ADMIN_ROLE_ID) {
            throw new ConflictError(`role ${id} is built in and cannot be removed`, { retryable: false });
          }
          const users = await tx.roleBindings.listAll(ctx.tenantId, { where: { roleId: id } });
          if (users.length) {
            throw new ConflictError(
              `role ${id} is bound to ${named(users.map((b) => b.principalId))} (${users.length} binding${users.length === 1 ? '' : 's'}); unbind them first`,
              { retryable: false },
            );
          }
          return tx.roles.delete(ctx.tenantId, id);
        },
        (removed) => ({ roleId: id, ...(removed ? {} : { removed: false }) }),
      );
    },
  };
}
