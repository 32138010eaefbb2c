import { StrictMode, useMemo, useRef, useState } from 'react';
import { createRoot } from 'react-dom/client';
import { GraphiQL } from 'graphiql';
import 'graphiql/graphiql.css';
import './playground.css';
import { makeFetcher } from './fetcher.js';
import { loadSession, saveSession, signIn } from './session.js';

const EXAMPLE = `# Sign in above (or set Authorization in the headers pane), pick a tenant, then run:
query Me {
  me { id email }
  myTenants { id name subdomain }
}

# With a tenant selected:
# query Projects { projects { id name } }
# subscription Usage { usageUpdated { period metrics { metric value limit } } }
`;

function SessionBar({ session, onChange }) {
  const [email, setEmail] = useState('');
  const [password, setPassword] = useState('');
  const [error, setError] = useState('');
  const [busy, setBusy] = useState(false);

  async function submit(event) {
    event.preventDefault();
    setBusy(true);
    setError('');
    try {
      const token = await signIn(email, password);
      setPassword('');
      onChange({ ...session, token });
    } catch (err) {
      setError(err.message);
    } finally {
      setBusy(false);
    }
  }

  return (
    <div className="session-bar">
      <strong>tenantry</strong>
      {session.token ? (
        <span className="signed-in">
          signed in
          <button type="button" onClick={() => onChange({ ...session, token: '' })}>
            sign out
          </button>
        </span>
      ) : (
        <form onSubmit={submit} aria-label="sign in">
          <input type="email" placeholder="email" value={email} onChange={(e) => setEmail(e.target.value)} required />
          <input type="password" placeholder="password" value={password} onChange={(e) => setPassword(e.target.value)} required />
          <button type="submit" disabled={busy}>sign in</button>
        </form>
      )}
      <label>
        tenant
        <input
          name="tenant"
          placeholder="subdomain"
          value={session.tenant}
          onChange={(e) => onChange({ ...session, tenant: e.target.value.trim() })}
        />
      </label>
      {error && <span className="error" role="alert">{error}</span>}
    </div>
  );
}

function Playground() {
  const [session, setSession] = useState(loadSession);
  const current = useRef(session);
  current.current = session;
  const fetcher = useMemo(() => makeFetcher(() => current.current), []);

  function update(next) {
    saveSession(next);
    setSession(next);
  }

  return (
    <div className="playground">
      <SessionBar session={session} onChange={update} />
      <div className="graphiql-host">
        <GraphiQL fetcher={fetcher} defaultQuery={EXAMPLE} shouldPersistHeaders={false} />
      </div>
    </div>
  );
}

createRoot(document.getElementById('root')).render(
  <StrictMode>
    <Playground />
  </StrictMode>,
);
