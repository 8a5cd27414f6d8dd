import { Code } from '@berth/api';
import { describe, expect, it } from 'vitest';
import { BANDWIDTH_BURST, podBandwidth, quantityValue } from './bandwidth.js';

describe('Kubernetes quantities', () => {
  it('read as apimachinery Value() does: SI and binary suffixes, exponents, rounded up', () => {
    const cases: [string, bigint][] = [
      ['1k', 1000n],
      ['1M', 1_000_000n],
      ['10Mi', 10_485_760n],
      ['1.5G', 1_500_000_000n],
      ['2e6', 2_000_000n],
      ['3E2', 300n],
      ['1E', 10n ** 18n],
      ['0.5Ki', 512n],
      ['1500m', 2n],
      ['100', 100n],
      ['+1Gi', 1_073_741_824n],
      ['-1k', -1000n],
    ];
    for (const [text, want] of cases) expect([text, quantityValue(text)]).toEqual([text, want]);
    for (const bad of ['', 'M', '1 M', '1Mb', '1mi', '10MB', '1e', '0x10', '1e999999999']) {
      expect([bad, quantityValue(bad)]).toEqual([bad, undefined]);
    }
  });
});

describe('podBandwidth', () => {
  it("converts the annotations to bits per second with containerd's burst, per annotated direction", () => {
    expect(podBandwidth({})).toBeUndefined();
    expect(
      podBandwidth({ 'kubernetes.io/ingress-bandwidth': '1M', 'kubernetes.io/egress-bandwidth': '10Mi' }),
    ).toEqual({
      ingressRate: 1_000_000,
      ingressBurst: BANDWIDTH_BURST,
      egressRate: 10_485_760,
      egressBurst: BANDWIDTH_BURST,
    });
    expect(podBandwidth({ 'kubernetes.io/egress-bandwidth': '2G' })).toEqual({
      egressRate: 2_000_000_000,
      egressBurst: 4294967295,
    });
  });

  it('refuses what kubelet refuses: not a quantity, under 1k or over 1P, naming the annotation', () => {
    const bad: [Record<string, string>, RegExp][] = [
      [{ 'kubernetes.io/ingress-bandwidth': '10MB' }, /ingress-bandwidth"\] "10MB" is not a quantity/],
      [{ 'kubernetes.io/egress-bandwidth': '999' }, /egress-bandwidth"\] 999 is unreasonably small/],
      [{ 'kubernetes.io/egress-bandwidth': '2P' }, /egress-bandwidth"\] 2P is unreasonably large/],
    ];
    for (const [annotations, msg] of bad) {
      expect(() => podBandwidth(annotations)).toThrow(msg);
      expect(() => podBandwidth(annotations)).toThrow(
        expect.objectContaining({ code: Code.INVALID_ARGUMENT }),
      );
    }
  });
});
