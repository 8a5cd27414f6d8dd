import { type Descriptor, errors, type Platform } from '@berth/api';

const ARCH: Record<string, string> = {
  x64: 'amd64',
  arm64: 'arm64',
  arm: 'arm',
  ia32: '386',
  ppc64: 'ppc64le',
  s390x: 's390x',
  riscv64: 'riscv64',
  mips64el: 'mips64le',
  loong64: 'loong64',
};

/** The host's platform in OCI terms (linux/amd64, linux/arm64/v8, ...). */
export function hostPlatform(): Platform {
  const architecture = ARCH[process.arch] ?? process.arch;
  const p: Platform = { os: 'linux', architecture };
  if (architecture === 'arm64') p.variant = 'v8';
  if (architecture === 'arm') p.variant = 'v7';
  return p;
}

/** Parses `os/arch[/variant]` (`linux/arm64/v8`); INVALID_ARGUMENT if malformed. */
export function parsePlatform(s: string): Platform {
  const parts = s.split('/');
  if (parts.length < 2 || parts.length > 3 || parts.some((x) => !/^[a-z0-9._-]+$/i.test(x))) {
    throw errors.invalid(`invalid platform "${s}": expected os/arch[/variant]`);
  }
  const p: Platform = {
    os: (parts[0] as string).toLowerCase(),
    architecture: (parts[1] as string).toLowerCase(),
  };
  if (p.architecture === 'x86_64' || p.architecture === 'x86-64') p.architecture = 'amd64';
  if (p.architecture === 'aarch64') p.architecture = 'arm64';
  if (parts[2]) p.variant = parts[2].toLowerCase();
  if (p.architecture === 'arm64' && !p.variant) p.variant = 'v8';
  return p;
}

/** `os/arch[/variant]` of a platform. */
export function formatPlatform(p: Platform): string {
  return `${p.os}/${p.architecture}${p.variant ? `/${p.variant}` : ''}`;
}

function variantOf(p: Platform): string | undefined {
  if (p.architecture === 'arm64') return p.variant ?? 'v8';
  return p.variant;
}

/**
 * Score of an index entry for the wanted platform: -1 when it does not match, higher is better.
 * arm variants are backward compatible (a v7 host runs v6 and v5), the exact one wins.
 */
export function platformScore(wanted: Platform, have: Platform | undefined): number {
  if (!have) return -1;
  if (have.os !== wanted.os || have.architecture !== wanted.architecture) return -1;
  const wv = variantOf(wanted);
  const hv = variantOf(have);
  if (wv === hv) return 100;
  if (!hv) return 50;
  if (wanted.architecture === 'arm' && wv && /^v\d$/.test(wv) && /^v\d$/.test(hv) && hv < wv)
    return 50 - (Number(wv[1]) - Number(hv[1]));
  if (!wv) return 10;
  return -1;
}

/** Picks the best manifest of an index for a platform; unknown media types are skipped, not fatal. */
export function selectManifest(
  manifests: Descriptor[],
  wanted: Platform,
  isManifestType: (mt: string) => boolean,
): Descriptor | undefined {
  let best: Descriptor | undefined;
  let bestScore = -1;
  for (const m of manifests) {
    if (!isManifestType(m.mediaType)) continue;
    const s = platformScore(wanted, m.platform);
    if (s > bestScore) {
      best = m;
      bestScore = s;
    }
  }
  return best;
}
