import { z } from 'zod';
import { type EntityInputs, IdSchema, type Principal, type RoleBinding, validate } from '../domain/index.js';
import { objectArgument } from '../domain/options.js';
import type { CallContext } from '../kernel/context.js';

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

/**
 * Principals of the tenant and their role bindings (roles themselves are written with
 * `access.roles`). Every call needs `iam.read` or `iam.write` and is audited.
 */
export interface IamApi {
  /**
   * Adds a principal (a human, a service or an API client).
   * @throws ValidationError; AlreadyExistsError for a taken id; AuthorizationError.
   */
  addPrincipal(input: Omit<EntityInputs['principals'], 'tenantId'>): Promise<Principal>;
  /**
   * Binds a role to a principal, tenant-wide or for some projects. Refused (`AuthorizationError`)
   * when it would widen the caller's own reach or give the principal anything the caller may not
   * do itself; unknown option fields (`tenantId` among them) are a `ValidationError`.
   * @throws NotFoundError when the principal or the role does not exist.
   */
  bindRole(principalId: string, roleId: string, options?: BindRoleOptions): Promise<RoleBinding>;
  /** Every principal of the tenant. @throws AuthorizationError. */
  listPrincipals(): Promise<Principal[]>;
}

/** Creates the IAM module on a call context. */
export function createIamApi(ctx: CallContext): IamApi {
  return {
    addPrincipal: async (input: Omit<EntityInputs['principals'], 'tenantId'>) =>
      objectArgument(input, 'Principal') &&
      ctx.write('iam.write', [{ type: 'principal' }], { type: 'principal', id: input.id ?? '(new)' }, (tx) =>
        tx.principals.create({ ...input, tenantId: ctx.tenantId } as EntityInputs['principals']),
      ),
    /**
     * Binds a role to a principal, tenant-wide or for some projects. Refused (`AuthorizationError`)
     * when it would widen the caller's own reach or give the principal anything the caller may not
     * do itself; unknown option fields (`tenantId` among them) are a `ValidationError`.
     */
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
    listPrincipals: () =>
      ctx.read('iam.read', [{ type: 'principal' }], { type: 'principal', id: '*' }, () =>
        ctx.runtime.store.principals.listAll(ctx.tenantId),
      ),
  };
}
