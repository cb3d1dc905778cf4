-- 0006 alerts: the model's disagreement with the rules, and the rules' own text.
-- model_disagreed: 1 when the model's analysis contradicts the rules (asked for a
-- higher severity than they allow, or recommended a trade on third-party text);
-- the severity column is the rules' either way.
-- rules_analysis: what the rules alone say, kept beside the model's analysis.
-- Rows written before this migration read as 0 and ''.
-- One statement, so the two columns arrive together. No IF NOT EXISTS: ClickHouse
-- 18.16 has no such clause on ADD COLUMN (a syntax error there); schema_migrations
-- already makes the migration run once.
ALTER TABLE alerts ADD COLUMN model_disagreed UInt8 DEFAULT 0, ADD COLUMN rules_analysis String DEFAULT '';
