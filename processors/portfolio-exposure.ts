/**
 * portfolio-exposure: joins each market-wide finding with every portfolio holding the symbol, and emits one
 * portfolio finding per holder, keyed by portfolio. Price moves are graded again against the portfolio's own
 * thresholds (price-move's, times its `moveThresholdScale`; a move below its medium is not reported to it); other
 * findings keep their severity. A holding heavier than the portfolio's `raiseAtWeight` then raises the severity one
 * level (never past critical); evidence gains the weight and, for price moves, the impact.
 *
 * A portfolio hears of a finding once per severity: when an agent reports a finding again (it escalated for some
 * portfolio, or market-wide), a holder whose own grade did not rise gets nothing new, so no alert is raised and no
 * LLM call made twice for the same thing. The store (per symbol) remembers the severity each portfolio finding was
 * reported at, for findings whose window started within `rememberMs` of the latest record.
 */
import { store, table, type ProcessorContext, type StreamRecord } from '../runtime/index.ts';
import type { Portfolio } from '../schemas/generated/types.ts';
import { findingId, severities, severityRank, type Finding, type FindingTopic } from './finding.ts';
import { moveSeverity, moveThresholdScaleOf, moveThresholdsOf, PRICE_MOVE_AGENT } from './price-move.ts';

export type { Holding, Portfolio } from '../schemas/generated/types.ts';

export const PORTFOLIOS_TABLE = 'portfolios';

/** The shared table of portfolios, by id (declared in the topology's `tables` under this name). */
export const portfolios = table<Portfolio>(PORTFOLIOS_TABLE);

/** Rules of a portfolio row that its schema cannot express; `table load` refuses a row with any. */
export function portfolioProblems(portfolio: Portfolio): string[] {
  const scale = portfolio.moveThresholdScale;
  return Number.isFinite(scale) && scale > 0
    ? []
    : [
        `moveThresholdScale must be a finite number > 0 (1 = the global price-move thresholds, 0.5 = twice as sensitive), got ${scale}`,
      ];
}

export const EXPOSURE_STORE = 'reported';

/** portfolio finding id → [severity rank reported, window start]. */
type Reported = Record<string, [number, number]>;

/** Per symbol: what each portfolio was told, at which severity. */
export const exposureStore = store<Reported>(EXPOSURE_STORE);

export function portfolioExposure(options: { output: FindingTopic; rememberMs?: number }) {
  const rememberMs = options.rememberMs ?? 24 * 3_600_000;
  return (record: StreamRecord<Finding>, ctx: ProcessorContext): void => {
    const market = record.value;
    if (market.portfolioId !== '') return; // already a portfolio finding
    const store = ctx.store(exposureStore);
    const reported: Reported = {};
    for (const [id, entry] of Object.entries(store.get() ?? {}))
      if (entry[1] >= record.timestamp - rememberMs) reported[id] = entry;
    const move = market.evidence.return;
    const thresholds =
      market.agent === PRICE_MOVE_AGENT && move !== undefined ? moveThresholdsOf(market.evidence) : undefined;
    for (const portfolio of ctx.table(portfolios).values()) {
      const holding = portfolio.holdings.find((h) => h.symbol === market.symbol);
      if (!holding || holding.weight <= 0) continue;
      const scale = moveThresholdScaleOf(portfolio);
      const graded = thresholds && move !== undefined ? moveSeverity(move, thresholds, scale) : market.severity;
      if (!graded) continue; // a move below this portfolio's own thresholds
      const raised = holding.weight >= portfolio.raiseAtWeight;
      const severity = severities[Math.min(severities.length - 1, severityRank(graded) + (raised ? 1 : 0))]!;
      const evidence: Record<string, number> = { ...market.evidence, weight: holding.weight };
      if (thresholds) evidence.thresholdScale = scale;
      if (move !== undefined) evidence.impact = holding.weight * move;
      const notes = [
        `${(holding.weight * 100).toFixed(1)}% of ${portfolio.name}`,
        ...(thresholds && scale !== 1 ? [`thresholds ×${scale}`] : []),
        ...(raised ? ['raised for exposure'] : []),
      ];
      const id = findingId(market.agent, market.rule, market.symbol, portfolio.portfolioId, market.windowStart);
      if ((reported[id]?.[0] ?? -1) >= severityRank(severity)) continue; // this portfolio already has it at this severity
      reported[id] = [severityRank(severity), market.windowStart];
      const value: Finding = {
        ...market,
        portfolioId: portfolio.portfolioId,
        severity,
        evidence,
        summary: `${market.summary} (${notes.join(', ')})`,
        findingId: id,
      };
      ctx.forward(options.output, { key: portfolio.portfolioId, value });
    }
    if (Object.keys(reported).length > 0) store.set(reported);
    else store.delete();
  };
}
