import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { OsFactsSchema } from '../../src/domain/index.js';
import { ParseError } from '../../src/errors.js';
import { OS_RELEASE_COMMAND, parseOsRelease } from '../../src/os/os-release.js';

const fixture = (name: string) =>
  readFileSync(new URL(`../fixtures/os-release/${name}`, import.meta.url), 'utf8');

describe('parseOsRelease', () => {
  it.each([
    [
      'debian-12',
      {
        family: 'debian',
        id: 'debian',
        versionId: '12',
        prettyName: 'Debian GNU/Linux 12 (bookworm)',
        packageManager: 'apt',
      },
    ],
    [
      'ubuntu-24.04',
      {
        family: 'debian',
        id: 'ubuntu',
        versionId: '24.04',
        prettyName: 'Ubuntu 24.04.1 LTS',
        packageManager: 'apt',
      },
    ],
    [
      'rocky-9',
      {
        family: 'rhel',
        id: 'rocky',
        versionId: '9.4',
        prettyName: 'Rocky Linux 9.4 (Blue Onyx)',
        packageManager: 'dnf',
      },
    ],
    [
      'centos-7',
      {
        family: 'rhel',
        id: 'centos',
        versionId: '7',
        prettyName: 'CentOS Linux 7 (Core)',
        packageManager: 'yum',
      },
    ],
    [
      'amzn-2023',
      {
        family: 'rhel',
        id: 'amzn',
        versionId: '2023',
        prettyName: 'Amazon Linux 2023.5.20240916',
        packageManager: 'dnf',
      },
    ],
    [
      'amzn-2',
      { family: 'rhel', id: 'amzn', versionId: '2', prettyName: 'Amazon Linux 2', packageManager: 'yum' },
    ],
    [
      'sles-15',
      {
        family: 'suse',
        id: 'sles',
        versionId: '15.5',
        prettyName: 'SUSE Linux Enterprise Server 15 SP5',
        packageManager: 'zypper',
      },
    ],
    [
      'opensuse-leap-15.6',
      {
        family: 'suse',
        id: 'opensuse-leap',
        versionId: '15.6',
        prettyName: 'openSUSE Leap 15.6',
        packageManager: 'zypper',
      },
    ],
  ])('parseOsRelease — reads the %s fixture', (name, expected) => {
    const facts = parseOsRelease(fixture(name));
    expect(facts).toEqual(expected);
    expect(OsFactsSchema.parse(facts)).toEqual(expected);
  });

  it('parseOsRelease — honours double-quote escapes, single quotes, unquoted escapes and comments', () => {
    const facts = parseOsRelease(fixture('quoted-escapes'));
    expect(facts).toEqual({
      family: 'debian',
      id: 'acme',
      versionId: '2.1',
      prettyName: 'Acme "Server" OS 2.1 $HOME `uname` back\\slash',
      packageManager: 'apt',
    });
  });

  it('parseOsRelease — keeps a backslash that escapes nothing inside double quotes, as sh does', () => {
    expect(parseOsRelease('ID=x\nPRETTY_NAME="a\\nb"\n').prettyName).toBe('a\\nb');
  });

  it('parseOsRelease — concatenates adjacent quoted parts and stops at an unquoted blank', () => {
    const facts = parseOsRelease('ID=x\nVERSION_ID=\'1\'"2"3 trailing words\n');
    expect(facts.versionId).toBe('123');
  });

  it('parseOsRelease — accepts CRLF line endings and lets a later assignment win', () => {
    const facts = parseOsRelease(
      'ID=fedora\r\nVERSION_ID=39\r\nVERSION_ID=40\r\nPRETTY_NAME="Fedora Linux 40"\r\n',
    );
    expect(facts).toEqual({
      family: 'rhel',
      id: 'fedora',
      versionId: '40',
      prettyName: 'Fedora Linux 40',
      packageManager: 'dnf',
    });
  });

  it('parseOsRelease — classifies derivatives by ID_LIKE (Linux Mint → apt, an EL7 clone → yum)', () => {
    expect(parseOsRelease('ID=linuxmint\nID_LIKE="ubuntu debian"\nVERSION_ID="21.3"\n')).toMatchObject({
      family: 'debian',
      packageManager: 'apt',
    });
    expect(parseOsRelease('ID="scientific"\nID_LIKE="rhel centos fedora"\nVERSION_ID="7.9"\n')).toMatchObject(
      {
        family: 'rhel',
        packageManager: 'yum',
      },
    );
    expect(parseOsRelease('ID="nobara"\nID_LIKE="fedora"\nVERSION_ID="1"\n')).toMatchObject({
      family: 'rhel',
      packageManager: 'dnf',
    });
    expect(parseOsRelease('ID="sle-micro"\nID_LIKE="suse"\nVERSION_ID="5.5"\n')).toMatchObject({
      family: 'suse',
      packageManager: 'zypper',
    });
  });

  it('parseOsRelease — picks yum for Enterprise Linux 7 and older and dnf from 8 on', () => {
    expect(parseOsRelease('ID="rhel"\nVERSION_ID="7.9"\n').packageManager).toBe('yum');
    expect(parseOsRelease('ID="ol"\nVERSION_ID="7.9"\n').packageManager).toBe('yum');
    expect(parseOsRelease('ID="rhel"\nVERSION_ID="8.10"\n').packageManager).toBe('dnf');
    expect(parseOsRelease('ID="almalinux"\nVERSION_ID="9.4"\n').packageManager).toBe('dnf');
    expect(parseOsRelease('ID="amzn"\nVERSION_ID="2018.03"\n').packageManager).toBe('yum');
  });

  it('parseOsRelease — returns unknown with no package manager for an unrecognised OS', () => {
    const facts = parseOsRelease('NAME="Arch Linux"\nID=arch\nPRETTY_NAME="Arch Linux"\n');
    expect(facts).toEqual({ family: 'unknown', id: 'arch', versionId: '', prettyName: 'Arch Linux' });
    expect('packageManager' in facts).toBe(false);
  });

  it('parseOsRelease — throws ParseError when there is no ID line', () => {
    expect(() => parseOsRelease(fixture('no-id'))).toThrow(ParseError);
    expect(() => parseOsRelease('')).toThrow(ParseError);
    expect(() => parseOsRelease('<html>not an os-release</html>')).toThrow(ParseError);
  });

  it('parseOsRelease — throws ParseError for an empty or unterminated ID', () => {
    expect(() => parseOsRelease('ID=\nVERSION_ID=1\n')).toThrow(ParseError);
    expect(() => parseOsRelease('ID="debian\n')).toThrow(ParseError);
  });

  it('parseOsRelease — ignores a commented-out ID', () => {
    expect(() => parseOsRelease('# ID=debian\nNAME=x\n')).toThrow(ParseError);
  });
});

describe('OS_RELEASE_COMMAND', () => {
  it('OS_RELEASE_COMMAND — is argv cat /etc/os-release, without sudo', () => {
    expect(OS_RELEASE_COMMAND).toEqual({ argv: ['cat', '/etc/os-release'] });
  });
});
