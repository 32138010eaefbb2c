import { createGraphiQLFetcher } from '@graphiql/toolkit';

// Queries and mutations go to /graphql over HTTP; subscriptions to /graphql/ws (graphql-ws).
// The websocket cannot send HTTP headers, so `Authorization` and `X-Tenant` (from the sign-in bar
// or the headers pane) travel in the `connection_init` payload; one socket per credential pair.
const httpUrl = `${location.origin}/graphql`;
const wsUrl = `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/graphql/ws`;

function header(headers, name) {
  const key = Object.keys(headers).find((k) => k.toLowerCase() === name);
  return key === undefined ? undefined : headers[key];
}

export function makeFetcher(getSession) {
  const byCredentials = new Map();
  return (params, options = {}) => {
    const { token, tenant } = getSession();
    const headers = {};
    if (token) headers.Authorization = `Bearer ${token}`;
    if (tenant) headers['X-Tenant'] = tenant;
    Object.assign(headers, options.headers || {});
    const authorization = header(headers, 'authorization');
    const xTenant = header(headers, 'x-tenant');
    const key = JSON.stringify([authorization || '', xTenant || '']);
    let fetcher = byCredentials.get(key);
    if (!fetcher) {
      const connectionParams = {};
      if (authorization) connectionParams.authorization = authorization;
      if (xTenant) connectionParams.tenant = xTenant;
      fetcher = createGraphiQLFetcher({
        url: httpUrl,
        subscriptionUrl: wsUrl,
        wsConnectionParams: connectionParams,
      });
      byCredentials.set(key, fetcher);
    }
    return fetcher(params, { ...options, headers });
  };
}
