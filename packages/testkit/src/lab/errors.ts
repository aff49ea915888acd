/** Base class of every error the lab throws, so tests can tell lab trouble from SDK failures. */
export class LabError extends Error {
  override readonly name: string = 'LabError';
}

/**
 * The machine cannot run a lab: `missing` says what to install or change, one item each
 * (e.g. `not running as root (uid 1000)`, `missing zypper (Debian package zypper)`).
 */
export class LabUnavailableError extends LabError {
  override readonly name = 'LabUnavailableError';
  constructor(readonly missing: readonly string[]) {
    super(`the lab cannot run here: ${missing.join('; ')}`);
  }
}

/** The options passed to `startLab` or `publish` are invalid; `path` names the field. */
export class LabOptionsError extends LabError {
  override readonly name = 'LabOptionsError';
  constructor(
    readonly path: string,
    message: string,
  ) {
    super(`${path}: ${message}`);
  }
}

/** A back-channel operation needs a running host, and this one is booting, powered off or gone. */
export class LabHostDownError extends LabError {
  override readonly name = 'LabHostDownError';
  constructor(
    readonly host: string,
    readonly state: string,
  ) {
    super(`lab host ${host} is ${state}`);
  }
}

/** A command the lab needed (ip, nsenter, a package manager inside a host...) failed. */
export class LabCommandError extends LabError {
  override readonly name = 'LabCommandError';
  constructor(
    message: string,
    readonly argv: readonly string[],
    readonly exitCode: number,
    readonly stdout: string,
    readonly stderr: string,
  ) {
    super(message);
  }
}
