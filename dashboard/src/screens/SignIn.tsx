// Sign in with the admin key or an instance key.
import { useState } from "preact/hooks";
import { Notice } from "../components/ui";
import { signIn, signInMessage } from "../session";

export function SignIn() {
  const [key, setKey] = useState("");
  const [error, setError] = useState("");
  const [busy, setBusy] = useState(false);

  const submit = async (e: Event) => {
    e.preventDefault();
    if (!key.trim()) {
      setError("Enter a key.");
      return;
    }
    setBusy(true);
    setError("");
    try {
      await signIn(key);
    } catch (err) {
      setError(signInMessage(err));
      setBusy(false);
    }
  };

  return (
    <main id="main" class="signin">
      <form onSubmit={submit} class="card" aria-labelledby="signin-title" novalidate>
        <h1 id="signin-title">switchboard</h1>
        <p class="muted">Sign in with the admin key, or with an instance key to see that instance only.</p>
        <div class={`field${error ? " field-invalid" : ""}`}>
          <label for="key">Key</label>
          <input
            id="key"
            name="key"
            type="password"
            autocomplete="current-password"
            autofocus
            value={key}
            onInput={(e) => setKey(e.currentTarget.value)}
            aria-invalid={error ? "true" : undefined}
            aria-describedby={error ? "signin-error" : "signin-hint"}
          />
          <small id="signin-hint" class="hint">
            Kept in this browser tab only, until you sign out or close it.
          </small>
        </div>
        {error && (
          <Notice kind="error" id="signin-error">
            {error}
          </Notice>
        )}
        <button type="submit" class="primary" disabled={busy}>
          {busy ? "Signing in…" : "Sign in"}
        </button>
      </form>
    </main>
  );
}
