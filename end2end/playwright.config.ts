import { defineConfig } from "@playwright/test";
import { randomBytes } from "node:crypto";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

// A fresh portal per run: empty data directory, a random first-admin password that the
// tests read from the environment (workers inherit it), and a port apart from a dev portal.
const port = process.env.E2E_PORT ?? "3100";
process.env.E2E_BASE_URL = `http://127.0.0.1:${port}`;
process.env.PORTAL_ADMIN_PASSWORD ??= randomBytes(18).toString("base64url");
const dataDir = mkdtempSync(join(tmpdir(), "portal-e2e-"));

export default defineConfig({
  testDir: "./tests",
  workers: 1,
  retries: 0,
  timeout: 60_000,
  reporter: [["list"]],
  outputDir: "test-results",
  use: {
    baseURL: process.env.E2E_BASE_URL,
    screenshot: "only-on-failure",
    trace: "retain-on-failure",
    launchOptions: {
      executablePath: process.env.CHROMIUM_PATH ?? "/usr/bin/chromium",
      args: [
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
      ],
    },
  },
  webServer: [{
    command:
      `../target/debug/portal-server --listen 127.0.0.1:${port} --data-dir ${dataDir} ` +
      `--site-root ../target/site --sim-provision-secs 2`,
    url: `http://127.0.0.1:${port}/healthz`,
    reuseExistingServer: false,
    timeout: 120_000,
    stdout: "pipe",
    stderr: "pipe",
    env: { PORTAL_ADMIN_PASSWORD: process.env.PORTAL_ADMIN_PASSWORD, PORTAL_LOG: "info" },
  }, {
    // The OpenID provider for single sign-on (tests/oidc.spec.ts), npm oidc-provider.
    command: "node idp.mjs",
    url: "http://127.0.0.1:9400/.well-known/openid-configuration",
    reuseExistingServer: false,
    timeout: 30_000,
    stdout: "pipe",
    stderr: "pipe",
    env: { E2E_BASE_URL: process.env.E2E_BASE_URL! },
  }],
  projects: [{ name: "chromium", use: { browserName: "chromium" } }],
});
