// The playground's sign-in state: the access token and tenant, kept in localStorage so a reload
// keeps them. They become the default `Authorization` and `X-Tenant` headers of every request and
// the `connection_init` payload of every subscription.
const TOKEN = 'tenantry.accessToken';
const TENANT = 'tenantry.tenant';

export function loadSession() {
  return { token: localStorage.getItem(TOKEN) || '', tenant: localStorage.getItem(TENANT) || '' };
}

export function saveSession({ token, tenant }) {
  if (token) localStorage.setItem(TOKEN, token);
  else localStorage.removeItem(TOKEN);
  if (tenant) localStorage.setItem(TENANT, tenant);
  else localStorage.removeItem(TENANT);
}

export async function signIn(email, password) {
  const response = await fetch('/graphql', {
    method: 'POST',
    headers: { 'content-type': 'application/json', accept: 'application/graphql-response+json' },
    body: JSON.stringify({
      query: 'mutation SignIn($email: String!, $password: String!) { signIn(email: $email, password: $password) { accessToken } }',
      variables: { email, password },
    }),
  });
  const body = await response.json();
  if (body.errors && body.errors.length) throw new Error(body.errors[0].message);
  return body.data.signIn.accessToken;
}
