// @parley/client: Parley's completions from TypeScript. The React hook is
// in @parley/client/react, so that this part needs no React.
export { ParleyClient } from './client.js';
export type { ParleyClientOptions, CallOptions } from './client.js';
export { ParleyError } from './errors.js';
export type * from './types.js';
