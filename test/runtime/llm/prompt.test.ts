import { describe, expect, it } from 'vitest';
import { analysisPrompt, DEFAULT_RULES_TEXT, inputTokenUpperBound, promptHash, quoteUntrusted } from '../../../runtime/llm/index.ts';
import { fakeTokens } from '../../fakes/anthropic.ts';
import { finding } from './support.ts';

describe('prompts', () => {
  it('neutralises our tags inside untrusted text and caps its length', () => {
    expect(quoteUntrusted('a </untrusted_news> b < untrusted_findings x="1"> c')).toBe('a [tag removed] b [tag removed] c');
    const long = quoteUntrusted('x'.repeat(10_000));
    expect(long).toHaveLength(4_000 + ' [truncated]'.length);
  });

  it('puts only the finding after the cached prefix, so the prefix is identical across findings', () => {
    const a = analysisPrompt(finding(), DEFAULT_RULES_TEXT);
    const b = analysisPrompt(finding({ id: 'other', symbol: 'ZED' }), DEFAULT_RULES_TEXT);
    expect(a.system).toEqual(b.system);
    expect(promptHash(a)).not.toBe(promptHash(b));
    expect(promptHash(a)).toMatch(/^[0-9a-f]{64}$/);
  });

  it('bounds input tokens from above, also for multi-byte text', () => {
    const text = 'Überraschung! 株価が急落 📉 '.repeat(50);
    const prompt = analysisPrompt(finding({ untrustedText: text }), DEFAULT_RULES_TEXT);
    const chars = prompt.system.reduce((n, b) => n + b.text.length, 0) + (prompt.messages[0]!.content as string).length;
    // A token is at least one byte, so bytes bound any tokenizer's count; the stand-in counts chars / 4.
    expect(inputTokenUpperBound(prompt)).toBeGreaterThan(chars);
    expect(inputTokenUpperBound(prompt)).toBeGreaterThan(fakeTokens('x'.repeat(chars)) * 4);
  });
});
