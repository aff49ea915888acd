import type { Resource } from '../authz/evaluate.js';
import {
  type Account,
  type AccountInput,
  IdSchema,
  matchesSelector,
  type Project,
  type ProjectInput,
  type Server,
  type ServerInput,
  ServerSchemas,
  type ServerSelector,
  ServerSelectorSchema,
  validate,
} from '../domain/index.js';
import {
  ListOptionsSchema,
  objectArgument,
  RemoveOptionsSchema,
  validateOptions,
} from '../domain/options.js';
import { ConflictError, NotFoundError } from '../errors.js';
import type { CallContext } from '../kernel/context.js';
import type { ListOptions } from '../ports/store.js';
import { type DiscoverOptions, type DiscoveryOutcome, discoverInventory } from './discover.js';

/** The fields of a server that `servers.update` may change. */
export type ServerChanges = Partial<Omit<ServerInput, 'tenantId' | 'id'>>;
/** The fields of a project that `projects.update` may change. */
export type ProjectChanges = Partial<Omit<ProjectInput, 'tenantId' | 'id'>>;

/**
 * The servers of the tenant. Every call is authorized (`inventory.read` / `inventory.write` on
 * the servers concerned) and audited, allowed or denied.
 */
export interface ServersApi {
  /**
   * Adds a server. Needs `inventory.write` on the server as it will be (its labels, provider,
   * account and region decide which rules apply).
   * @throws ValidationError for input that does not fit the server schema; AlreadyExistsError for
   * a taken id or name; AuthorizationError.
   */
  add(input: Omit<ServerInput, 'tenantId'>): Promise<Server>;
  /**
   * Changes a server, compare-and-swap on `expectedVersion`. Refused when new labels would widen
   * the caller's reach or give another principal anything the caller may not do itself.
   * @throws NotFoundError; ConflictError for a stale version; ValidationError; AuthorizationError.
   */
  update(id: string, changes: ServerChanges, options: { expectedVersion: number }): Promise<Server>;
  /**
   * Removes a server (with `expectedVersion`, only that version). Resolves false when there was
   * none.
   * @throws ConflictError for a stale version; AuthorizationError.
   */
  remove(id: string, options?: { expectedVersion?: number }): Promise<boolean>;
  /** The server, or undefined when there is none. @throws AuthorizationError when it may not be read. */
  get(id: string): Promise<Server | undefined>;
  /**
   * Servers matching the options (selector, filters, order, page). Servers the principal may not
   * read are left out rather than refused. @default at most 100 servers
   * @throws ValidationError for unknown or malformed options.
   */
  list(options?: ListOptions<Server>): Promise<Server[]>;
}

/** Cloud accounts and data-centre groupings of the tenant (`inventory.*` on accounts). */
export interface AccountsApi {
  /** Adds an account. @throws ValidationError; AlreadyExistsError; AuthorizationError. */
  add(input: Omit<AccountInput, 'tenantId'>): Promise<Account>;
  /** Every account of the tenant. @throws AuthorizationError. */
  list(): Promise<Account[]>;
  /**
   * The account, or undefined when there is none.
   * @throws ValidationError for a malformed id; AuthorizationError.
   */
  get(id: string): Promise<Account | undefined>;
  /**
   * Removes an account that no server belongs to (with `expectedVersion`, only that version).
   * Resolves false when there was none.
   * @throws ConflictError while servers belong to it (the error says how many) or for a stale
   * version; ValidationError for a malformed id or options; AuthorizationError.
   */
  remove(id: string, options?: { expectedVersion?: number }): Promise<boolean>;
}

/** Projects: named server selectors that policies, schedules, reports and bindings refer to. */
export interface ProjectsApi {
  /**
   * Adds a project. Needs `inventory.write` on the project and on every server its selector
   * chooses; refused when principals already bound to the project id would gain anything the
   * caller may not do itself.
   * @throws ValidationError; AlreadyExistsError; AuthorizationError.
   */
  add(input: Omit<ProjectInput, 'tenantId'>): Promise<Project>;
  /**
   * Changes a project, compare-and-swap on `expectedVersion`. A new selector needs
   * `inventory.write` on every server it chooses, and is refused when it would widen the caller's
   * reach or give a principal bound to the project anything the caller may not do itself.
   * @throws NotFoundError; ConflictError; ValidationError; AuthorizationError.
   */
  update(id: string, changes: ProjectChanges, options: { expectedVersion: number }): Promise<Project>;
  /**
   * Removes a project; refused when that would lift a deny that a project-bound role imposed.
   * Resolves false when there was none.
   */
  remove(id: string, options?: { expectedVersion?: number }): Promise<boolean>;
  /** The project, or undefined. @throws AuthorizationError. */
  get(id: string): Promise<Project | undefined>;
  /** Every project of the tenant. @throws AuthorizationError. */
  list(): Promise<Project[]>;
  /** The servers the project's selector chooses now (readable ones only). @throws NotFoundError. */
  servers(id: string): Promise<Server[]>;
}

/** Discovery: the servers of cloud accounts, as their providers list them (see docs/discovery.md). */
export interface InventoryDiscoveryApi {
  /**
   * Lists the servers of each account (every account of the tenant, or `accountIds`) through the
   * `discover` capability of its provider's adapter, and stores them as servers of the tenant,
   * matched by account and `providerId`: new ones are added (id `<provider>-<providerId>`, made
   * safe), changed ones updated, ones no longer listed marked gone (`goneAt`, never deleted), and
   * a gone one listed again is un-gone. Tags become labels under `tag.<provider>/`; labels set by
   * hand under other keys are kept. Accounts are discovered one after the other, each in its own
   * transaction with its audit record and an `inventory.discovered` event: an account that fails
   * (or whose adapter throws) fails alone, with its error's code and message in the outcome; a
   * region that fails leaves that region's servers as they were. Accounts of a provider without a
   * `discover` adapter are `skipped`. Every account must be allowed `inventory.discover`, or
   * nothing runs.
   * @default every account of the tenant
   * @throws ValidationError for bad options; AuthorizationError; NotFoundError for an unknown
   * account id (after authorization); AbortedError when `signal` fired before it started.
   */
  discover(options?: DiscoverOptions): Promise<DiscoveryOutcome>;
}

/** The inventory module: servers, accounts, projects and discovery. */
export interface InventoryApi extends InventoryDiscoveryApi {
  servers: ServersApi;
  accounts: AccountsApi;
  projects: ProjectsApi;
  /**
   * The readable servers a selector chooses (at most 10,000).
   * @throws ValidationError for a selector that is not valid.
   */
  selectServers(selector: ServerSelector): Promise<Server[]>;
}

/** Creates the inventory module on a call context. */
export function createInventoryApi(ctx: CallContext): InventoryApi {
  const servers: ServersApi = {
    add: async (input: Omit<ServerInput, 'tenantId'>): Promise<Server> => {
      objectArgument(input, 'ServerInput');
      const candidate = { ...input, tenantId: ctx.tenantId } as ServerInput;
      const resulting = ServerSchemas.input.safeParse(candidate);
      return ctx.write(
        'inventory.write',
        [
          { type: 'server-inventory' },
          ...(resulting.success ? [{ type: 'server' as const, server: resulting.data as Server }] : []),
        ],
        { type: 'server', id: input.id ?? '(new)' },
        (tx) => tx.servers.create(candidate),
        (s) => ({ serverId: s.id, name: s.name }),
      );
    },
    update: async (
      id: string,
      changes: ServerChanges,
      options: { expectedVersion: number },
    ): Promise<Server> => {
      const current = await ctx.runtime.store.servers.get(ctx.tenantId, id);
      if (!current) throw new NotFoundError('server', id);
      return ctx.write(
        'inventory.write',
        [{ type: 'server', server: current }],
        { type: 'server', id },
        (tx) => tx.servers.update(ctx.tenantId, id, changes, options),
        undefined,
        { principals: 'all', servers: [id], others: false },
      );
    },
    remove: async (id: string, options: { expectedVersion?: number } = {}): Promise<boolean> => {
      validateOptions(RemoveOptionsSchema, options, 'RemoveOptions');
      const current = await ctx.runtime.store.servers.get(ctx.tenantId, id);
      if (!current) return false;
      return ctx.write(
        'inventory.write',
        [{ type: 'server', server: current }],
        { type: 'server', id },
        (tx) => tx.servers.delete(ctx.tenantId, id, options),
      );
    },
    get: async (id: string): Promise<Server | undefined> => {
      const server = await ctx.runtime.store.servers.get(ctx.tenantId, id);
      if (!server) return undefined;
      return ctx.read(
        'inventory.read',
        [{ type: 'server', server }],
        { type: 'server', id },
        async () => server,
      );
    },
    /** Servers the principal may read, matching the options. Servers it may not read are left out. */
    list: async (input: ListOptions<Server> = {}): Promise<Server[]> => {
      const options = validateOptions(ListOptionsSchema, input, 'ListOptions') as ListOptions<Server>;
      const servers = await ctx.runtime.store.servers.list(ctx.tenantId, options);
      // No gate on the list itself: each server is decided on its own, and unreadable ones are left out.
      return ctx.read('inventory.read', [], { type: 'server-inventory', id: '*' }, async () =>
        ctx.allowedAmong('inventory.read', servers),
      );
    },
  };

  const accounts: AccountsApi = {
    add: async (input: Omit<AccountInput, 'tenantId'>) =>
      objectArgument(input, 'AccountInput') &&
      ctx.write(
        'inventory.write',
        [{ type: 'account' }],
        { type: 'account', id: input.id ?? '(new)' },
        (tx) => tx.accounts.create({ ...input, tenantId: ctx.tenantId } as AccountInput),
      ),
    list: () =>
      ctx.read('inventory.read', [{ type: 'account' }], { type: 'account', id: '*' }, () =>
        ctx.runtime.store.accounts.listAll(ctx.tenantId),
      ),
    get: async (id: string) => {
      validate(IdSchema, id, 'accountId');
      return ctx.read('inventory.read', [{ type: 'account' }], { type: 'account', id }, () =>
        ctx.runtime.store.accounts.get(ctx.tenantId, id),
      );
    },
    remove: async (id: string, options: { expectedVersion?: number } = {}) => {
      validate(IdSchema, id, 'accountId');
      const opts = validateOptions(RemoveOptionsSchema, options, 'RemoveOptions');
      return ctx.write(
        'inventory.write',
        [{ type: 'account' }],
        { type: 'account', id },
        async (tx) => {
          if (!(await tx.accounts.get(ctx.tenantId, id))) return false;
          const servers = await tx.servers.listAll(ctx.tenantId, { where: { accountId: id } });
          if (servers.length) {
            throw new ConflictError(
              `account ${id} still has ${servers.length} server${servers.length === 1 ? '' : 's'}; remove ${servers.length === 1 ? 'it' : 'them'} first`,
              { retryable: false },
            );
          }
          return tx.accounts.delete(ctx.tenantId, id, opts);
        },
        (removed) => ({ accountId: id, ...(removed ? {} : { removed: false }) }),
      );
    },
  };

  const projects: ProjectsApi = {
    /**
     * Adds a project. Needs `inventory.write` on the project and on every server its selector
     * chooses; refused when principals already bound to the project id would gain anything the
     * caller may not do itself.
     */
    add: async (input: Omit<ProjectInput, 'tenantId'>) =>
      objectArgument(input, 'ProjectInput') &&
      ctx.write(
        'inventory.write',
        [
          { type: 'project', ...(input.id ? { id: input.id, projectId: input.id } : {}) },
          ...(await chosenBy(ctx, input.selector)),
        ],
        { type: 'project', id: input.id ?? '(new)' },
        (tx) => tx.projects.create({ ...input, tenantId: ctx.tenantId } as ProjectInput),
        undefined,
        input.id ? { principals: { boundToProject: input.id }, servers: 'all', others: false } : undefined,
      ),
    /**
     * Changes a project. A new selector needs `inventory.write` on every server it chooses, and is
     * refused when it would widen the caller's reach or give a principal bound to the project
     * anything the caller may not do itself.
     */
    update: async (id: string, changes: ProjectChanges, options: { expectedVersion: number }) =>
      ctx.write(
        'inventory.write',
        [{ type: 'project', id, projectId: id }, ...(await chosenBy(ctx, changes?.selector))],
        { type: 'project', id },
        (tx) => tx.projects.update(ctx.tenantId, id, changes, options),
        undefined,
        { principals: { boundToProject: id }, servers: 'all', others: false },
      ),
    /** Removes a project; refused when that would lift a deny that a project-bound role imposed. */
    remove: async (id: string, options: { expectedVersion?: number } = {}) =>
      validateOptions(RemoveOptionsSchema, options, 'RemoveOptions') &&
      ctx.write(
        'inventory.write',
        [{ type: 'project', id, projectId: id }],
        { type: 'project', id },
        (tx) => tx.projects.delete(ctx.tenantId, id, options),
        undefined,
        { principals: { boundToProject: id }, servers: 'all', others: false },
      ),
    get: (id: string) =>
      ctx.read('inventory.read', [{ type: 'project', id, projectId: id }], { type: 'project', id }, () =>
        ctx.runtime.store.projects.get(ctx.tenantId, id),
      ),
    list: () =>
      ctx.read('inventory.read', [{ type: 'project' }], { type: 'project', id: '*' }, () =>
        ctx.runtime.store.projects.listAll(ctx.tenantId),
      ),
    /** The servers a project's selector chooses now. */
    servers: async (id: string) => {
      const project = await ctx.runtime.store.projects.require(ctx.tenantId, id);
      return servers.list({ selector: project.selector, limit: 10_000 });
    },
  };

  const selectServers = async (selector: ServerSelector): Promise<Server[]> =>
    servers.list({
      selector: validate(ServerSelectorSchema, selector, 'ServerSelector'),
      limit: 10_000,
    });

  const discover = (options?: DiscoverOptions) => discoverInventory(ctx, options);

  return { servers, accounts, projects, selectServers, discover };
}

/** The servers a selector given as input chooses, as resources; none for a selector that is not valid. */
async function chosenBy(ctx: CallContext, selector: unknown): Promise<Resource[]> {
  if (selector === undefined) return [];
  const parsed = ServerSelectorSchema.safeParse(selector);
  if (!parsed.success) return [];
  const servers = await ctx.runtime.store.servers.listAll(ctx.tenantId);
  return servers
    .filter((server) => matchesSelector(server, parsed.data))
    .map((server) => ({ type: 'server', server }));
}
