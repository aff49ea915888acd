/**
 * Programs that run inside lab hosts (init, power shims, sshd launcher, lock holder) and the
 * text of the files that make a host what it is. Only validated names, addresses and numbers
 * are ever pasted into a script; everything else travels in files or argv.
 */
import type { LabFlavour } from './types.js';

/** Where lab helpers live inside a host. */
export const HOST_LIB = '/usr/lib/fleetward-lab';
/** Lab state inside a host (seed files during first boot, the disk filler). */
export const HOST_STATE = '/var/lib/fleetward-lab';
/** PATH of every command in a host. */
export const HOST_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

/** Exit statuses of a host's PID 1 that tell the lab what the host asked for. */
export const INIT_EXIT_REBOOT = 10;
export const INIT_EXIT_POWEROFF = 11;

/**
 * PID 1 of a host. unshare gave it fresh PID, mount, UTS and IPC namespaces inside the host's
 * network namespace and the keeper's mount namespace, where "$1" is the host's overlay root.
 */
export const INIT_SCRIPT = `#!/bin/sh
# Fleetward lab host init. $1 = overlay root, $2 = hostname.
# Exit ${INIT_EXIT_REBOOT} asks the lab to boot this host again, ${INIT_EXIT_POWEROFF} to keep it off.
set -eu
# fd 3 is the keeper's mount namespace, handed to nsenter; nothing in the host may keep it.
exec 3<&-
R=$1
NAME=$2
export PATH=${HOST_PATH}

mount -t proc -o nosuid,nodev,noexec proc "$R/proc"
# /proc/sys is the machine's (only net/ is per host): read-only, so no host retunes the machine.
mount --bind "$R/proc/sys" "$R/proc/sys"
mount -o remount,bind,ro,nosuid,nodev,noexec "$R/proc/sys"
if [ -e "$R/proc/sysrq-trigger" ]; then mount --bind /dev/null "$R/proc/sysrq-trigger"; fi
mount -t sysfs -o ro,nosuid,nodev,noexec sysfs "$R/sys"

# A minimal /dev: no block devices, so nothing in a host can reach the machine's disks.
mount -t tmpfs -o nosuid,mode=0755,size=8m fwlab-dev "$R/dev"
for dev in 'null 1 3' 'zero 1 5' 'full 1 7' 'random 1 8' 'urandom 1 9' 'tty 5 0'; do
  set -- $dev
  mknod -m 0666 "$R/dev/$1" c "$2" "$3"
done
mkdir -m 0755 "$R/dev/pts" "$R/dev/shm"
mount -t devpts -o newinstance,ptmxmode=0666,mode=0620,gid=5,nosuid,noexec devpts "$R/dev/pts"
ln -s pts/ptmx "$R/dev/ptmx"
mount -t tmpfs -o nosuid,nodev,mode=1777,size=64m fwlab-shm "$R/dev/shm"
ln -s /proc/self/fd "$R/dev/fd"
ln -s /proc/self/fd/0 "$R/dev/stdin"
ln -s /proc/self/fd/1 "$R/dev/stdout"
ln -s /proc/self/fd/2 "$R/dev/stderr"

# /run starts empty every boot, as on a real machine.
mount -t tmpfs -o nosuid,nodev,mode=0755,size=64m fwlab-run "$R/run"
mkdir -p "$R/run/sshd" "$R/run/lock" "$R/run/fleetward-lab"
chmod 1777 "$R/run/lock"
# The kernel's boot_id is global; each host boot gets its own.
cat /proc/sys/kernel/random/uuid > "$R/run/fleetward-lab/boot_id"
mount --bind "$R/run/fleetward-lab/boot_id" "$R/proc/sys/kernel/random/boot_id"

hostname "$NAME"
# pivot_root, then detach the old root: the machine's / and the other hosts' disks vanish
# from this host's view, which a chroot would leave reachable.
cd "$R"
pivot_root . .
umount -l .
cd /

trap 'exit ${INIT_EXIT_REBOOT}' USR1
trap 'exit ${INIT_EXIT_POWEROFF}' USR2
${HOST_LIB}/start-sshd || echo "fleetward-lab: sshd did not start" >&2
echo "FWLAB-READY $(cat /proc/sys/kernel/random/boot_id)"
while :; do
  sleep 3600 &
  wait $! || true
done
`;

/**
 * Capabilities nothing started by sshd may have, root included: they reach past the host's
 * namespaces to the machine (mounts and setns, modules, raw I/O, the clock, device nodes,
 * BPF, the kernel log, kexec images). The power shims need none of them: they signal PID 1.
 */
const DROPPED_CAPS = [
  'sys_admin',
  'sys_boot',
  'sys_module',
  'sys_rawio',
  'sys_time',
  'mknod',
  'syslog',
  'dac_read_search',
  'wake_alarm',
  'block_suspend',
  'mac_admin',
  'mac_override',
  'audit_control',
  'audit_read',
  'sys_pacct',
  'bpf',
  'perfmon',
  'checkpoint_restore',
];

/** Starts sshd in daemon mode: returns once it listens (or failed). */
export const START_SSHD_SCRIPT = `#!/bin/sh
# Starts this Fleetward lab host's sshd with a reduced capability bounding set.
set -e
mkdir -p -m 0755 /run/sshd /var/log/fleetward-lab
exec setpriv --inh-caps=-all --bounding-set=${DROPPED_CAPS.map((c) => `-${c}`).join(',')} -- \\
  /usr/sbin/sshd -E /var/log/fleetward-lab/sshd.log "$@"
`;

/** Installed as reboot, poweroff, halt, shutdown and systemctl: asks PID 1 to end the boot. */
export const POWER_SCRIPT = `#!/bin/sh
# Fleetward lab host power control. There is no systemd here: PID 1 is the lab's init, and
# SIGUSR1 (reboot) or SIGUSR2 (poweroff) makes it end this boot; the lab boots the host again
# after a reboot. Other systemctl verbs are not available.
me=\${0##*/}
pending=/run/fleetward-lab/shutdown.pid

fail() { echo "$me: $*" >&2; exit 1; }

request() { # signal, delay in seconds
  [ "$(id -u)" = 0 ] || fail "Access denied (lab host: only root may $me)"
  # setsid: the request must outlive the caller's session, which the power-off ends.
  if [ "$2" -gt 0 ]; then
    setsid sh -c "sleep $2; kill -s $1 1" </dev/null >/dev/null 2>&1 &
    echo $! > "$pending"
    echo "Shutdown scheduled in $2 s, use 'shutdown -c' to cancel."
  else
    setsid sh -c "sleep 0.2; kill -s $1 1" </dev/null >/dev/null 2>&1 &
  fi
  exit 0
}

case $me in
  reboot) request USR1 0 ;;
  poweroff | halt) request USR2 0 ;;
  shutdown)
    signal=USR2
    when=+1
    cancel=no
    for arg in "$@"; do
      case $arg in
        -r | --reboot) signal=USR1 ;;
        -h | -P | -H | --poweroff | --halt) signal=USR2 ;;
        -c) cancel=yes ;;
        -*) ;;
        now | +[0-9]* | [0-9]*:[0-9]*) when=$arg ;;
      esac
    done
    if [ "$cancel" = yes ]; then
      [ -f "$pending" ] && kill "$(cat "$pending")" 2>/dev/null
      rm -f "$pending"
      exit 0
    fi
    case $when in
      now | +0) delay=0 ;;
      +*) delay=$(( \${when#+} * 60 )) ;;
      *) delay=$(( $(date -d "$when" +%s) - $(date +%s) )); [ "$delay" -ge 0 ] || delay=$(( delay + 86400 )) ;;
    esac
    request "$signal" "$delay"
    ;;
  systemctl)
    verb=
    for arg in "$@"; do
      case $arg in -*) ;; *) verb=$arg; break ;; esac
    done
    case $verb in
      reboot | kexec | soft-reboot) request USR1 0 ;;
      poweroff | halt) request USR2 0 ;;
      is-system-running) echo running ;;
      *) fail "'$verb' is not available on a Fleetward lab host (no systemd)" ;;
    esac
    ;;
  *) fail "unknown power command" ;;
esac
`;

/** Holds package-manager locks until its stdin closes. */
export const HOLD_LOCKS_SCRIPT = `#!/usr/bin/python3
"""Fleetward lab: holds package-manager locks until stdin closes.

fcntl:PATH takes an fcntl write lock (dpkg, apt and rpm lock with fcntl F_SETLK, not flock);
pid:PATH writes this process's pid into a pid-file lock (dnf's rpmdb_lock.pid, zypper's zypp.pid).
"""
import fcntl
import os
import sys

held = []
for spec in sys.argv[1:]:
    kind, path = spec.split(':', 1)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    if kind == 'fcntl':
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    else:
        os.ftruncate(fd, 0)
        os.write(fd, b'%d\\n' % os.getpid())
    held.append((kind, path, fd))
print('LOCKED', flush=True)
sys.stdin.read()
for kind, path, fd in held:
    if kind == 'pid':
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
    os.close(fd)
`;

/** Lock specs for `hold-locks`, per flavour. */
export const PACKAGE_LOCKS: Record<LabFlavour, string[]> = {
  debian: ['fcntl:/var/lib/dpkg/lock-frontend', 'fcntl:/var/lib/dpkg/lock'],
  rhel: ['pid:/var/lib/dnf/rpmdb_lock.pid', 'fcntl:/var/lib/rpm/.rpm.lock'],
  suse: ['pid:/run/zypp.pid', 'fcntl:/var/lib/rpm/.rpm.lock'],
};

/** Fills the writable layer: 1 MiB writes until ENOSPC, then 4 KiB ones for the last pages. */
export const FILL_DISK_SCRIPT = `mkdir -p ${HOST_STATE}
f=${HOST_STATE}/disk-filler
dd if=/dev/zero of="$f" bs=1M status=none 2>/dev/null || true
dd if=/dev/zero of="$f" bs=4k oflag=append conv=notrunc status=none 2>/dev/null || true
sync
`;

/** The lab's sshd configuration: keys and passwords both, root by key only, no PAM. */
export function sshdConfig(address: string): string {
  return `# Fleetward lab host sshd.
ListenAddress ${address}:22
ListenAddress 127.0.0.1:22
HostKey /etc/ssh/ssh_host_ed25519_key
HostKey /etc/ssh/ssh_host_rsa_key
PermitRootLogin prohibit-password
PubkeyAuthentication yes
AuthorizedKeysFile .ssh/authorized_keys
# Without PAM, sshd checks passwords (and account expiry) against /etc/shadow itself.
PasswordAuthentication yes
KbdInteractiveAuthentication no
UsePAM no
PidFile /run/sshd.pid
PrintMotd no
AcceptEnv LANG LC_*
LogLevel VERBOSE
# Tests open many connections at once; the default 10:30:100 would drop some.
MaxStartups 200
MaxSessions 100
Subsystem sftp /usr/lib/openssh/sftp-server
`;
}

/** `/etc/os-release` of the non-Debian flavours (debian hosts keep the machine's own). */
export const OS_RELEASE: Record<Exclude<LabFlavour, 'debian'>, string> = {
  rhel: `NAME="Rocky Linux"
VERSION="9.4 (Blue Onyx)"
ID="rocky"
ID_LIKE="rhel centos fedora"
VERSION_ID="9.4"
PLATFORM_ID="platform:el9"
PRETTY_NAME="Rocky Linux 9.4 (Blue Onyx)"
ANSI_COLOR="0;32"
LOGO="fedora-logo-icon"
CPE_NAME="cpe:/o:rocky:rocky:9::baseos"
HOME_URL="https://rockylinux.org/"
BUG_REPORT_URL="https://bugs.rockylinux.org/"
SUPPORT_END="2032-05-31"
ROCKY_SUPPORT_PRODUCT="Rocky-Linux-9"
ROCKY_SUPPORT_PRODUCT_VERSION="9.4"
REDHAT_SUPPORT_PRODUCT="Rocky Linux"
REDHAT_SUPPORT_PRODUCT_VERSION="9.4"
`,
  suse: `NAME="SLES"
VERSION="15-SP5"
VERSION_ID="15.5"
PRETTY_NAME="SUSE Linux Enterprise Server 15 SP5"
ID="sles"
ID_LIKE="suse"
ANSI_COLOR="0;32"
CPE_NAME="cpe:/o:suse:sles:15:sp5"
DOCUMENTATION_URL="https://documentation.suse.com/"
`,
};

export const RHEL_RELEASE = 'Rocky Linux release 9.4 (Blue Onyx)\n';

/** RHEL's dnf.conf defaults; Debian's dnf.conf has skip_if_unavailable=True, which would hide a cut network. */
export const DNF_CONF = `[main]
gpgcheck=1
installonly_limit=3
clean_requirements_on_remove=True
best=True
skip_if_unavailable=False
`;

/** rpm on Debian keeps its database in ~/.rpmdb; RHEL and SUSE keep it here. */
export const RPM_MACROS = '%_dbpath /var/lib/rpm\n';

/**
 * The lab repository for dnf. `metadata_expire=0` makes every dnf command see the current
 * publish (a real repository would be checked every few hours).
 */
export function dnfRepo(url: string): string {
  return `[fleetward-lab]
name=Fleetward lab
baseurl=${url}
enabled=1
gpgcheck=0
metadata_expire=0
`;
}

/** The lab repository for zypper, refreshed on every command (see ZYPP_CONF). */
export function zypperRepo(url: string): string {
  return `[fleetward-lab]
name=Fleetward lab
enabled=1
autorefresh=1
baseurl=${url}
type=rpm-md
gpgcheck=0
`;
}

export const ZYPP_CONF = `[main]
repo.refresh.delay = 0
`;

export function aptSources(url: string, suites: readonly string[]): string {
  return `# Fleetward lab: the lab's apt repository is this host's only source.\n${suites
    .map((suite) => `deb [trusted=yes] ${url} ${suite} main\n`)
    .join('')}`;
}

/** What to refresh after a publish, per flavour. */
export const REFRESH_COMMANDS: Record<LabFlavour, string[]> = {
  debian: ['apt-get', 'update', '-q'],
  rhel: ['dnf', '-q', 'makecache'],
  suse: ['zypper', '--non-interactive', '--quiet', 'refresh'],
};

/** One login user's first-boot setup. */
export interface FirstBootUser {
  login: string;
  shell: string;
  groups: string[];
  hasPassword: boolean;
  hasSudoers: boolean;
}

/** First boot: accounts, the old packages, repository metadata. Runs once, as root, in the host. */
export function firstBootScript(flavour: LabFlavour, users: readonly FirstBootUser[]): string {
  const seed = `${HOST_STATE}/seed`;
  const lines = [
    'set -eu',
    `S=${seed}`,
    // sshd without PAM refuses even keys for locked ("!") accounts; "*" is "no password, not locked".
    "usermod -p '*' root",
  ];
  for (const u of users) {
    const groups = u.groups.length > 0 ? ` -G ${u.groups.join(',')}` : '';
    lines.push(`useradd -m -U -s ${u.shell}${groups} ${u.login}`);
    lines.push(u.hasPassword ? `chpasswd < "$S/${u.login}.chpasswd"` : `usermod -p '*' ${u.login}`);
    lines.push(`install -d -m 0700 -o ${u.login} -g ${u.login} /home/${u.login}/.ssh`);
    lines.push(
      `install -m 0600 -o ${u.login} -g ${u.login} "$S/${u.login}.pub" /home/${u.login}/.ssh/authorized_keys`,
    );
    if (u.hasSudoers)
      lines.push(`install -m 0440 "$S/${u.login}.sudoers" /etc/sudoers.d/fleetward-lab-${u.login}`);
  }
  if (flavour === 'debian') {
    lines.push('if ls "$S"/pkgs/*.deb >/dev/null 2>&1; then dpkg -i "$S"/pkgs/*.deb >/dev/null; fi');
  } else {
    lines.push('rm -rf /var/lib/rpm', 'mkdir -p /var/lib/rpm', 'rpm --initdb');
    // Debian's rpm warns on every install that it is not Debian's package manager: keep its
    // output for failures only.
    lines.push(
      'if ls "$S"/pkgs/*.rpm >/dev/null 2>&1; then',
      '  rpm -i --nodeps "$S"/pkgs/*.rpm >"$S/rpm.log" 2>&1 || { cat "$S/rpm.log" >&2; exit 1; }',
      'fi',
    );
  }
  lines.push(REFRESH_COMMANDS[flavour].join(' '));
  lines.push('rm -rf "$S"');
  return `${lines.join('\n')}\n`;
}
