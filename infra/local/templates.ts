import { readFileSync, writeFileSync } from 'node:fs';

/** Fills `${NAME}` placeholders; a placeholder left without a value is an error, not an empty string. */
export function renderTemplate(templatePath: string, outPath: string, values: Record<string, string | number>): void {
  const text = readFileSync(templatePath, 'utf8').replace(/\$\{([A-Z_]+)\}/g, (whole, name: string) => {
    const value = values[name];
    if (value === undefined) throw new Error(`${templatePath}: no value for ${whole}`);
    return String(value);
  });
  writeFileSync(outPath, text);
}
