/**
 * The fleet's analyst on the runtime's generic LLM service: which model answers (tiering), what it is asked
 * (prompts), how its reply is checked (parsers) and what is said when it cannot answer (rules-only text).
 * `analyzeFinding` is one Messages call per finding, with one corrective turn; `summarizeDigests` one Message Batch.
 */
import { AgentStreamsError, ErrorCode, RULES_ONLY, type CompletionRequest, type Llm } from '../../runtime/index.ts';
import type { Severity } from '../finding.ts';
import type { Portfolio } from '../portfolio-exposure.ts';
import { parseAnalysis, parseDigest } from './parse.ts';
import { portfolioBook } from './rule-book.ts';
import {
  analysisPrompt,
  ANALYSIS_CORRECTION,
  DEFAULT_RULES_TEXT,
  DIGEST_RULES_TEXT,
  digestPrompt,
  type PromptFinding,
} from './prompts.ts';
import { rulesOnlyAnalysis, rulesOnlyDigest, type Analysis, type DigestContent } from './rules-only.ts';
import { clampSeverity, exceedsRules, isSeverity } from './severity.ts';
import { defaultModelTiers, modelFor, type ModelTiers } from './tiers.ts';

type Trace = CompletionRequest<unknown>['trace'];

export interface AnalystOptions {
  models?: Partial<ModelTiers>;
  /** Findings at or above this severity use the strong model; default critical. */
  strongAt?: Severity;
  /** Which tier writes digests; default triage (a digest is a summary, and latency does not matter). */
  digestTier?: keyof ModelTiers;
  /** max_tokens of an analysis; default 600. */
  maxTokens?: number;
  /** max_tokens of a digest; default 500. */
  digestMaxTokens?: number;
  /**
   * The rule book in the cached prompt prefix; default DEFAULT_RULES_TEXT followed by the portfolio book of
   * `portfolios`. Keep it above the models' minimum cacheable length, or caching silently does nothing.
   */
  rulesText?: string;
  /** The portfolios, for the portfolio book after the default rule book (they change slowly, so they are cached). */
  portfolios?: readonly Portfolio[];
  /** The rule summary of the digest prompt; default DIGEST_RULES_TEXT. */
  digestRulesText?: string;
}

export interface AnalyzeContext {
  /** Budget and audit key; default the finding's agent type. */
  agent?: string;
  portfolioName?: string;
  /** Aborting rejects with the abort. */
  signal?: AbortSignal;
  /** The trace the call belongs to (the finding's record); default the active context. */
  trace?: Trace;
}

/** One hour of one portfolio's findings, to be summarised through the Message Batches API. */
export interface SummaryRequest extends DigestContent {
  /** Unique within one `summarizeDigests` call. */
  id: string;
  /** Budget and audit key; default `digest`. */
  agent?: string;
}

export interface DigestSummary {
  id: string;
  summary: string;
  /** Model id, or `rules-only`. */
  model: string;
  reason?: string;
}

export interface Analyst {
  readonly llm: Llm;
  readonly models: Readonly<ModelTiers>;
  analyzeFinding(finding: PromptFinding, context?: AnalyzeContext): Promise<Analysis>;
  /** One result per request, in request order. */
  summarizeDigests(
    requests: readonly SummaryRequest[],
    options?: { signal?: AbortSignal; traces?: ReadonlyArray<Trace> },
  ): Promise<DigestSummary[]>;
}

function validate(llm: Llm, options: AnalystOptions, models: ModelTiers): void {
  const problems: string[] = [];
  for (const name of ['maxTokens', 'digestMaxTokens'] as const) {
    const value = options[name];
    if (value !== undefined && !(Number.isInteger(value) && value >= 1))
      problems.push(`${name} must be a whole number >= 1, got ${value}`);
  }
  if (options.strongAt !== undefined && !isSeverity(options.strongAt))
    problems.push(`strongAt must be a severity, got ${String(options.strongAt)}`);
  if (options.digestTier !== undefined && options.digestTier !== 'triage' && options.digestTier !== 'strong')
    problems.push(`digestTier must be triage or strong`);
  if (options.portfolios !== undefined && !Array.isArray(options.portfolios))
    problems.push('portfolios must be an array of portfolios (the rows of the portfolios table)');
  if (options.portfolios !== undefined && options.rulesText !== undefined)
    problems.push(
      'give rulesText or portfolios, not both: the portfolio book is appended to the default rule book only',
    );
  for (const tier of ['triage', 'strong'] as const) {
    const model = models[tier];
    if (typeof model !== 'string' || model === '') problems.push(`models.${tier} must be a model id`);
    else if (llm.priceOf(model) === undefined)
      problems.push(
        `no price for model ${model} (models.${tier}): add it to prices so that cost and USD budgets can be estimated`,
      );
  }
  if (problems.length > 0) {
    throw new AgentStreamsError(
      ErrorCode.LLM_OPTIONS_INVALID,
      `Invalid analyst options: ${problems.join('; ')}. Fix the options passed to createAnalyst().`,
      {
        details: { problems },
      },
    );
  }
}

export function createAnalyst(llm: Llm, options: AnalystOptions = {}): Analyst {
  const models: ModelTiers = { ...defaultModelTiers, ...options.models };
  validate(llm, options, models);
  const strongAt = options.strongAt ?? 'critical';
  const book = options.portfolios ? portfolioBook(options.portfolios) : '';
  const rulesText = options.rulesText ?? (book ? `${DEFAULT_RULES_TEXT}\n\n${book}` : DEFAULT_RULES_TEXT);
  const digestRulesText = options.digestRulesText ?? DIGEST_RULES_TEXT;
  const maxTokens = options.maxTokens ?? 600;
  const digestMaxTokens = options.digestMaxTokens ?? 500;
  return {
    llm,
    models,
    analyzeFinding(finding, context = {}) {
      const model = modelFor(finding.severity, models, strongAt);
      return llm.complete<Analysis>({
        prompt: analysisPrompt(finding, rulesText, context.portfolioName),
        model,
        maxTokens,
        budgetKey: context.agent ?? finding.agent,
        recordId: finding.id,
        correction: ANALYSIS_CORRECTION,
        parse(text) {
          const parsed = parseAnalysis(text);
          if (!parsed.ok) return parsed;
          const output = parsed.value;
          return {
            ok: true,
            value: {
              analysis: output.summary,
              recommendedAction: output.recommended_action,
              severity: clampSeverity(output.severity, finding.severity),
              confidence: output.confidence,
              model,
              modelSeverity: output.severity,
              modelDisagreed: exceedsRules(output.severity, finding.severity),
            },
          };
        },
        fallback: (reason) => rulesOnlyAnalysis(finding, reason),
        ...(context.signal ? { signal: context.signal } : {}),
        ...(context.trace ? { trace: context.trace } : {}),
      });
    },
    summarizeDigests(requests, digestOptions = {}) {
      return llm.completeBatch<DigestSummary>(
        requests.map((request) => ({
          prompt: digestPrompt(request, digestRulesText),
          budgetKey: request.agent ?? 'digest',
          parse(text, reply) {
            const parsed = parseDigest(text);
            return parsed.ok
              ? { ok: true, value: { id: request.id, summary: parsed.value.summary, model: reply.model } }
              : parsed;
          },
          fallback: (reason) => ({ id: request.id, summary: rulesOnlyDigest(request), model: RULES_ONLY, reason }),
        })),
        {
          model: models[options.digestTier ?? 'triage'],
          maxTokens: digestMaxTokens,
          ...(digestOptions.signal ? { signal: digestOptions.signal } : {}),
          ...(digestOptions.traces ? { traces: digestOptions.traces } : {}),
        },
      );
    },
  };
}
