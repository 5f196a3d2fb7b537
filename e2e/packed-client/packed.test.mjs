// The client installed as the README says, packed (scripts/e2e.sh packs and
// installs it): its hook renders with the app's React, the one copy. A
// client installed by path is a link, and its hook would find the React of
// the client's own node_modules: React refuses a second copy ("Invalid hook
// call"), and the first render throws.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createElement } from 'react';
import { renderToString } from 'react-dom/server';
import { useAIChat } from '@parley/client/react';

test("the packed client's hook renders with the app's React", () => {
  function App() {
    const chat = useAIChat({ baseUrl: 'http://127.0.0.1:1/api/v1', chatId: 'cht_packed' });
    return createElement('div', null, `${chat.messages.length} ${chat.sessionId} ${chat.isStreaming}`);
  }
  assert.equal(renderToString(createElement(App)), '<div>0 null false</div>');
});
