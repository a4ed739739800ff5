// Preloaded into configurable-http-proxy by gpuhub.proxy.GPUHubProxy
// (`node --import THIS_FILE …/configurable-http-proxy`).
//
// configurable-http-proxy 5.3.0 never listens for its http-proxy-3 server's "error"
// event, and http-proxy-3 re-emits there every error of a proxied websocket's
// *client* socket. When a browser resets such a connection (a JupyterLab terminal or
// tab closes, a laptop sleeps), that error has no listener, so EventEmitter throws it
// and CHP's uncaughtException handler logs "Uncaught Exception: read ECONNRESET".
// Here every proxy server made through http-proxy-3 gets a listener: a client that
// went away (ECONNRESET, EPIPE, ECONNABORTED) is closed quietly; any other error is
// logged as before, and its socket closed.
import { createRequire } from "node:module";

const require = createRequire(process.argv[1]); // the http-proxy-3 that CHP itself loads
const httpProxy = require("http-proxy-3");
const GONE = new Set(["ECONNRESET", "EPIPE", "ECONNABORTED"]);

function onError(err, req, res) {
  if (!GONE.has(err && err.code)) {
    console.error(`${new Date().toISOString()} [ConfigProxy] error: proxy error on ${req && req.url}: ${err && err.stack}`);
  }
  if (res && typeof res.destroy === "function" && !res.headersSent) {
    res.destroy();
  }
}

const create = httpProxy.createProxyServer;
httpProxy.createProxyServer = function (...args) {
  const server = create.apply(this, args);
  server.on("error", onError);
  return server;
};
