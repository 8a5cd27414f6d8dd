import { BerthError, Code, type ShimBandwidth } from '@berth/api';

/** The pod annotations the kubelet's bandwidth limits come in (bits per second, as quantities). */
export const BandwidthAnnotation = {
  ingress: 'kubernetes.io/ingress-bandwidth',
  egress: 'kubernetes.io/egress-bandwidth',
} as const;
export type BandwidthAnnotation = (typeof BandwidthAnnotation)[keyof typeof BandwidthAnnotation];

/** containerd's burst for either direction (math.MaxUint32 bits): the rate alone limits. */
export const BANDWIDTH_BURST = 4294967295;

/** Limits of kubelet's validateBandwidthIsReasonable: 1k to 1P bits per second. */
const MIN_RATE = 1000n;
const MAX_RATE = 10n ** 15n;

/** Suffixes of a Kubernetes quantity: binary SI (powers of 2) and decimal SI (powers of 10). */
const BINARY: Record<string, bigint> = { Ki: 1n, Mi: 2n, Gi: 3n, Ti: 4n, Pi: 5n, Ei: 6n };
const DECIMAL: Record<string, number> = { n: -9, u: -6, m: -3, '': 0, k: 3, M: 6, G: 9, T: 12, P: 15, E: 18 };

/**
 * The integer value of a Kubernetes quantity ("1M", "10Mi", "1.5G", "2e6", "500m"), rounded up as
 * apimachinery's Quantity.Value() is; undefined when `text` is not a quantity.
 */
export function quantityValue(text: string): bigint | undefined {
  // Bounded, so the exact arithmetic below stays small (no 10^(10^9) from "1e999999999").
  if (text.length > 64) return undefined;
  const m = /^([+-]?)(\d+(?:\.\d*)?|\.\d+)(Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE]|[eE][+-]?\d+)?$/.exec(text);
  if (!m) return undefined;
  const [, sign = '', number = '', suffix = ''] = m;
  const [whole = '', frac = ''] = number.split('.');
  // number = digits / 10^scale, exactly.
  let num = BigInt(`${whole}${frac}` || '0');
  let den = 10n ** BigInt(frac.length);
  const bin = BINARY[suffix];
  const exp = bin === undefined ? (DECIMAL[suffix] ?? Number(suffix.slice(1))) : 0;
  if (Math.abs(exp) > 64) return undefined;
  if (bin !== undefined) num *= 1024n ** bin;
  else if (exp >= 0) num *= 10n ** BigInt(exp);
  else den *= 10n ** BigInt(-exp);
  // Away from zero, as Value() rounds.
  const value = (num + den - 1n) / den;
  return sign === '-' ? -value : value;
}

/** One direction's rate from its annotation: INVALID_ARGUMENT naming the annotation if bad. */
function rateOf(annotations: Record<string, string>, key: BandwidthAnnotation): number | undefined {
  const text = annotations[key];
  if (text === undefined) return undefined;
  const field = `config.annotations["${key}"]`;
  const value = quantityValue(text);
  if (value === undefined) {
    throw new BerthError(
      Code.INVALID_ARGUMENT,
      `${field} "${text.slice(0, 64)}" is not a quantity (e.g. 10M)`,
    );
  }
  if (value < MIN_RATE) {
    throw new BerthError(Code.INVALID_ARGUMENT, `${field} ${text} is unreasonably small (< 1kbit)`);
  }
  if (value > MAX_RATE) {
    throw new BerthError(Code.INVALID_ARGUMENT, `${field} ${text} is unreasonably large (> 1Pbit)`);
  }
  return Number(value);
}

/**
 * The CNI `bandwidth` capability of a pod from its annotations, as containerd's toCNIBandWidth
 * makes it: each annotated direction's rate in bits per second with a burst of 2^32-1 bits;
 * undefined when neither is annotated. A bad value fails the pod (INVALID_ARGUMENT), as there.
 */
export function podBandwidth(annotations: Record<string, string>): ShimBandwidth | undefined {
  const ingress = rateOf(annotations, BandwidthAnnotation.ingress);
  const egress = rateOf(annotations, BandwidthAnnotation.egress);
  if (ingress === undefined && egress === undefined) return undefined;
  return {
    ...(ingress === undefined ? {} : { ingressRate: ingress, ingressBurst: BANDWIDTH_BURST }),
    ...(egress === undefined ? {} : { egressRate: egress, egressBurst: BANDWIDTH_BURST }),
  };
}
