/**
 * The catalogue of actions a role can allow or deny. Roles name these exactly, by family
 * (`patch.*`) or all (`*`). Facade calls check one of them before doing anything.
 */
export const ACTIONS = {
  'inventory.read': 'List and read servers, accounts and projects.',
  'inventory.write': 'Add, change and remove servers, accounts and projects.',
  'inventory.discover':
    "List an account's servers from its provider and store them (added, changed, marked gone).",
  'patch.scan': 'Scan servers for pending patches.',
  'patch.read': 'Read scan results, compliance and reports.',
  'patch.policy': 'Create, change and remove patch policies.',
  'patch.plan': 'Plan a patch run.',
  'patch.approve': 'Approve a patch plan.',
  'patch.execute': 'Execute an approved patch plan.',
  'script.read': 'Read scripts in the repository.',
  'script.write': 'Add and change scripts.',
  'script.run': 'Run a script on servers.',
  'script.approve': 'Approve the current version of a risky script (its content hash).',
  'runbook.approve': 'Approve an approval step of a runbook run that someone else started.',
  'access.request':
    'Request just-in-time access to servers (decided per server); see and end your own requests and grants.',
  'access.approve':
    'Approve, reject or revoke access requests and grants of others; run access housekeeping.',
  'keys.read': 'See the keys on servers (inventory), managed credentials and rotation policies.',
  'keys.rotate': 'Register managed keys, deploy and rotate them, and set rotation policies.',
  'audit.read': 'Read and verify the audit log.',
  'iam.read': 'Read principals, roles and bindings.',
  'iam.write': 'Change principals, roles and bindings.',
} as const;

export type Action = keyof typeof ACTIONS;
export const ACTION_NAMES = Object.keys(ACTIONS) as Action[];

// A Set, not `name in ACTIONS`: `in` also finds what every object inherits (`toString`,
// `constructor`, `__proto__`), which would pass for actions.
const ACTION_SET: ReadonlySet<string> = new Set(ACTION_NAMES);
const FAMILIES: ReadonlySet<string> = new Set(ACTION_NAMES.map((a) => a.slice(0, a.indexOf('.'))));

/** Whether `name` is an action of the catalogue (own names only, never inherited ones). */
export function isAction(name: string): name is Action {
  return ACTION_SET.has(name);
}

/**
 * Whether a role may name `pattern`: `*`, an action of the catalogue, or `family.*` for a family
 * the catalogue has (`patch.*`). Anything else would be a rule that silently matches nothing.
 */
export function isActionPattern(pattern: string): boolean {
  if (pattern === '*') return true;
  if (pattern.endsWith('.*')) return FAMILIES.has(pattern.slice(0, -2));
  return ACTION_SET.has(pattern);
}

/** Whether a role's action pattern (`patch.scan`, `patch.*`, `*`) covers `action`. */
export function actionMatches(pattern: string, action: string): boolean {
  if (pattern === '*') return true;
  if (pattern.endsWith('.*')) return action.startsWith(pattern.slice(0, -1));
  return pattern === action;
}
