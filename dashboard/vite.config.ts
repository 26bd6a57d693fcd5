// The dashboard's build: Preact + TypeScript, bundled by Vite into
// dist/, which the server embeds and serves under /dashboard/.
import { defineConfig } from "vite";

// `npm run dev` serves the app with hot reload and sends the API to a
// running server (SWITCHBOARD_URL, default http://127.0.0.1:8080).
const server = process.env.SWITCHBOARD_URL ?? "http://127.0.0.1:8080";
const api = [
  "/instance", "/message", "/call", "/group", "/webhook", "/websocket", "/retention",
  "/events", "/auth", "/metrics", "/health", "/ready", "/cluster", "/pool",
];

export default defineConfig({
  base: "/dashboard/",
  oxc: { jsx: { runtime: "automatic", importSource: "preact" } },
  build: {
    outDir: "dist",
    emptyOutDir: true,
    target: "es2022",
    // Every file is a file: the server's CSP allows no inline code.
    assetsInlineLimit: 0,
    modulePreload: { polyfill: false },
    reportCompressedSize: true,
  },
  server: {
    proxy: {
      ...Object.fromEntries(api.map((path) => [path, server])),
      "/ws": { target: server.replace(/^http/, "ws"), ws: true },
    },
  },
});
