// The server's input rules, checked in the form first so a person sees
// what to fix before sending. The server checks them again and its answer
// is shown the same way when it disagrees.

export function instanceName(value: string): string | undefined {
  if (!value) return "Give the instance a name.";
  if (value.length > 64) return "At most 64 characters.";
  if (!/^[A-Za-z0-9]/.test(value)) return "Start with a letter or a digit.";
  if (!/^[A-Za-z0-9][A-Za-z0-9_-]*$/.test(value)) return "Use only letters, digits, '_' and '-'.";
  return undefined;
}

/** An optional leading + and 3 to 20 digits; spaces, dashes, dots and
 * parentheses are allowed in between, as people type them. */
export function phoneNumber(value: string, required = false): string | undefined {
  const trimmed = value.trim();
  if (!trimmed) return required ? "Enter a phone number." : undefined;
  const digits = trimmed.replace(/^\+/, "").replace(/[\s\-.()]/g, "");
  if (!/^[0-9]{3,20}$/.test(digits)) return "Use digits with an optional leading + (3 to 20 digits).";
  return undefined;
}

export function hostPort(value: string): string | undefined {
  const trimmed = value.trim();
  if (!trimmed) return "Enter the bridge's address as host:port.";
  const at = trimmed.lastIndexOf(":");
  const host = trimmed.slice(0, at);
  const port = Number(trimmed.slice(at + 1));
  if (at <= 0 || !host || !/^[0-9]+$/.test(trimmed.slice(at + 1)) || port < 1 || port > 65535)
    return "Use host:port, for example 10.0.0.5:7001.";
  return undefined;
}

export function integerIn(value: string, min: number, max: number, what: string, required = false): string | undefined {
  const trimmed = value.trim();
  if (!trimmed) return required ? `Enter ${what}.` : undefined;
  if (!/^[0-9]+$/.test(trimmed)) return `${what[0].toUpperCase()}${what.slice(1)} must be a whole number.`;
  const n = Number(trimmed);
  if (n < min || n > max) return `Between ${min} and ${max}.`;
  return undefined;
}

export function decimalIn(value: string, min: number, max: number): string | undefined {
  const trimmed = value.trim();
  if (!trimmed) return undefined;
  const n = Number(trimmed);
  if (!Number.isFinite(n) || n < min || n > max) return `A number between ${min} and ${max}.`;
  return undefined;
}
