// Signing in and out, and the scoped tokens the streams use.
//
// The key is kept in the tab's sessionStorage: it survives a reload but not
// closing the tab, and other tabs and sites never see it. It is never put
// in a URL; the WebSockets get a short-lived token instead (POST
// /auth/token), which can only read streams.
import { ApiError, post, useKey, type TokenAnswer } from "./api";
import { Store } from "./store";

const STORAGE = "switchboard.key";

export interface Session {
  role: "admin" | "instance";
  /** "*" for the admin key; the instance key's one instance otherwise. */
  instances: string[] | "*";
}

export const session = new Store<Session | null>(null);

let token: { value: string; expiresAt: number } | null = null;

/** A token lives this long; streams refresh it before it ends. */
const TOKEN_TTL_SECS = 3600;

async function mint(): Promise<TokenAnswer> {
  const answer = await post<TokenAnswer>("/auth/token", {
    ttlSecs: TOKEN_TTL_SECS,
    subject: "dashboard",
  });
  token = { value: answer.token, expiresAt: Date.now() + answer.expiresIn * 1000 };
  return answer;
}

/** A stream token valid for at least two more minutes. */
export async function streamToken(): Promise<{ value: string; expiresAt: number }> {
  if (!token || token.expiresAt - Date.now() < 120_000) await mint();
  return token!;
}

/** Forgets the token, so the next stream mints a new one. */
export function dropToken(): void {
  token = null;
}

/** What a person sees when their key is refused. */
export function signInMessage(err: unknown): string {
  if (err instanceof ApiError) {
    if (err.status === 401)
      return "This key was not accepted. Use the admin key (data/admin.key on the server) or an instance key (the \"hash\" returned when the instance was created).";
    if (err.status === 429)
      return "Too many failed sign-ins from this address. Wait a minute, then try again.";
    return err.message;
  }
  return String(err);
}

/** Checks the key by minting a stream token with it: the answer says
 * whether the key is the admin's ("*") or an instance's (its name). */
export async function signIn(key: string): Promise<Session> {
  useKey(key.trim());
  dropToken();
  try {
    const answer = await mint();
    const next: Session = {
      role: answer.instances === "*" ? "admin" : "instance",
      instances: answer.instances,
    };
    sessionStorage.setItem(STORAGE, key.trim());
    session.set(next);
    return next;
  } catch (err) {
    useKey("");
    throw err;
  }
}

export function signOut(): void {
  sessionStorage.removeItem(STORAGE);
  useKey("");
  dropToken();
  session.set(null);
}

/** Signs in again with the key kept in this tab, after a reload. */
export async function resume(): Promise<boolean> {
  const key = sessionStorage.getItem(STORAGE);
  if (!key) return false;
  try {
    await signIn(key);
    return true;
  } catch {
    sessionStorage.removeItem(STORAGE);
    return false;
  }
}
