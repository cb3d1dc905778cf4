/**
 * filings: material regulatory filings. 8-K items carry severities by what they disclose; Form 4 insider trades
 * by their dollar size and direction.
 */
import type { ProcessorContext, StreamRecord } from '../runtime/index.ts';
import type { Filing } from '../schemas/generated/types.ts';
import { finding, severityRank, type FindingTopic, type Severity } from './finding.ts';

/** 8-K items by severity: what each discloses decides how much it matters. */
export const eightKItems: Record<string, { severity: Severity; means: string }> = {
  '1.01': { severity: 'low', means: 'a material agreement' },
  '1.02': { severity: 'medium', means: 'a terminated material agreement' },
  '1.03': { severity: 'critical', means: 'bankruptcy or receivership' },
  '2.02': { severity: 'low', means: 'results of operations' }, // scheduled every quarter: the numbers move the price, not the filing
  '2.04': { severity: 'high', means: 'an accelerated obligation' },
  '2.05': { severity: 'medium', means: 'exit or disposal costs' },
  '2.06': { severity: 'high', means: 'a material impairment' },
  '3.01': { severity: 'high', means: 'a delisting notice' },
  '4.01': { severity: 'high', means: 'a change of auditor' },
  '4.02': { severity: 'critical', means: 'non-reliance on previous financial statements' },
  '5.02': { severity: 'high', means: 'an officer or director change' },
  '8.01': { severity: 'low', means: 'other events' },
};

export function filingsAgent(options: { output: FindingTopic }) {
  return (record: StreamRecord<Filing>, ctx: ProcessorContext): void => {
    const filing = record.value;
    const t = record.timestamp;
    const emit = (rule: string, severity: Severity, evidence: Record<string, number>, summary: string): void =>
      ctx.forward(options.output, {
        key: filing.symbol,
        value: finding(
          {
            agent: 'filings',
            rule,
            symbol: filing.symbol,
            severity,
            windowStart: t,
            windowEnd: t,
            eventTime: t,
            evidence,
            summary,
          },
          record,
        ),
      });

    if (filing.formType === '8-K') {
      const known = filing.items
        .map((item) => [item, eightKItems[item]] as const)
        .filter((e): e is readonly [string, { severity: Severity; means: string }] => e[1] !== undefined);
      if (known.length === 0) return;
      const worst = known.reduce((a, b) => (severityRank(b[1].severity) > severityRank(a[1].severity) ? b : a));
      emit(
        `8-K-${worst[0]}`,
        worst[1].severity,
        { items: known.length },
        `${filing.symbol} filed an 8-K disclosing ${known.map(([, k]) => k.means).join(', ')}`,
      );
      return;
    }
    if (
      filing.formType === '4' &&
      filing.insider &&
      filing.insider.direction !== 'OTHER' &&
      filing.insider.price !== null
    ) {
      const value = filing.insider.shares * filing.insider.price;
      const selling = filing.insider.direction === 'SELL';
      const severity: Severity | undefined = selling
        ? value >= 25_000_000
          ? 'high'
          : value >= 5_000_000
            ? 'medium'
            : undefined
        : value >= 1_000_000
          ? 'low'
          : undefined;
      if (!severity) return;
      emit(
        `insider-${selling ? 'sale' : 'purchase'}`,
        severity,
        { value, shares: filing.insider.shares },
        `${filing.insider.role} of ${filing.symbol} ${selling ? 'sold' : 'bought'} $${(value / 1e6).toFixed(1)}M of stock`,
      );
    }
  };
}
