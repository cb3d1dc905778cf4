/**
 * The golden scenario is the same whatever hour and date the suite runs at. CI starts at any time, and the fleet
 * runs place the feed just before the last hour boundary, so the feed's intraday volume profile (and the dates in
 * its texts) change with the clock. This computes, with the test driver, what the fleet must produce for every hour
 * of a few dates, and checks each against the documented planted findings: the expectation the real-stack golden
 * test hard-codes holds at all 24 hours.
 */
import { describe, expect, it } from 'vitest';
import { expectedFleetOutput, plantedDifferences, type ExpectedOutput } from './fleet-run.ts';

const HOUR = 3_600_000;
/** An ordinary day, a leap day and the last day of a year (its hour 0 feed lies in the year before). */
const DATES = ['2026-11-25', '2028-02-29', '2031-12-31'];

/** What the golden test compares across runs: who is alerted about what, and which portfolios get a digest. */
function shape(output: ExpectedOutput): { alerts: string[]; digests: string[] } {
  return {
    alerts: [...new Set(output.alerts.map((a) => `${a.portfolioId} ${a.symbol} ${a.severity}`))].sort(),
    digests: output.digests.map((d) => d.portfolioId).sort(),
  };
}

describe('the golden scenario at every hour of the day', () => {
  it.each(DATES)(
    '%s: the planted findings at their documented severities, nothing else high, the same alerts and digests at all 24 hours',
    (date) => {
      const midnight = Date.parse(`${date}T00:00:00Z`);
      const differences: string[] = [];
      const shapes = new Map<string, number[]>();
      for (let h = 0; h < 24; h += 1) {
        const output = expectedFleetOutput(midnight + (h + 1) * HOUR);
        const findings = [...output.findings, ...output.portfolioFindings];
        for (const difference of plantedDifferences(findings))
          differences.push(`${String(h).padStart(2, '0')}:00 UTC: ${difference}`);
        const key = JSON.stringify(shape(output));
        shapes.set(key, [...(shapes.get(key) ?? []), h]);
      }
      expect(differences).toEqual([]);
      // One shape for all 24 hours: the golden run's alerts and digests do not depend on when it runs.
      expect([...shapes.entries()].map(([key, hours]) => `${hours.join(',')}: ${key}`)).toHaveLength(1);
      const [only] = shapes.keys();
      const { alerts, digests } = JSON.parse(only!) as { alerts: string[]; digests: string[] };
      expect(alerts.length).toBeGreaterThan(0);
      expect(digests.length).toBeGreaterThan(0);
    },
    120_000,
  );
});
