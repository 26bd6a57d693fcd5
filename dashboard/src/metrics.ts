// Reads the Prometheus text that /metrics answers. The server writes plain
// `name value` lines (no labels, no timestamps), so a parser library would
// be more than the format needs; a line this does not understand is skipped.
export function parseMetrics(text: string): Map<string, number> {
  const values = new Map<string, number>();
  for (const line of text.split("\n")) {
    if (!line || line.startsWith("#")) continue;
    const [name, value] = line.trim().split(/\s+/, 2);
    const number = Number(value);
    if (name && /^[a-zA-Z_:][a-zA-Z0-9_:]*$/.test(name) && Number.isFinite(number)) values.set(name, number);
  }
  return values;
}

/** Per-second rate of a counter between consecutive samples (never
 * negative: a server restart resets counters). */
export function rates(samples: { at: number; values: Map<string, number> }[], name: string): number[] {
  const out: number[] = [];
  for (let i = 1; i < samples.length; i++) {
    const a = samples[i - 1];
    const b = samples[i];
    const before = a.values.get(name);
    const after = b.values.get(name);
    const seconds = (b.at - a.at) / 1000;
    if (before === undefined || after === undefined || seconds <= 0) continue;
    out.push(Math.max(0, after - before) / seconds);
  }
  return out;
}

export function gauge(samples: { values: Map<string, number> }[], name: string): number[] {
  return samples.map((s) => s.values.get(name)).filter((v): v is number => v !== undefined);
}
