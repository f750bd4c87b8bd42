// SSH keys on /keys, as a viewer (every role keeps its own keys): add an ed25519 key and see
// the fingerprint `ssh-keygen -lf` prints, be told what to paste instead of garbage or a
// private key (which never leaves the browser), delete the key.
import { expect, test } from "@playwright/test";
import { adminPassword, call, invite, session } from "./api";
import { hydrated } from "./hydrated";

// Made with `ssh-keygen -t ed25519 -C me@laptop`; `ssh-keygen -lf` prints FINGERPRINT.
const ED25519 = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAINr5+JuxHZ1k1KxLAVt+KOg4bewHCmfYQkAnMlk57Fg0 me@laptop";
const FINGERPRINT = "SHA256:YXbAs8XmqC/XcELGmMavrRPtxyvfyV0wmL9ADMOrK/s";
const NOT_A_KEY =
  "That is not an OpenSSH public key; paste the one line from ~/.ssh/id_ed25519.pub (it starts with ssh-ed25519, ecdsa-sha2-nistp256 or ssh-rsa).";
// The shape of a private key pasted by mistake (not a real key).
const PRIVATE = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW\n-----END OPENSSH PRIVATE KEY-----";

test("a viewer adds an SSH key, sees its fingerprint, is told what to paste, and deletes it", async ({ browser }) => {
  const admin = await session("admin", adminPassword);
  const me = await call<{ tenant_id: string }>(admin, "get_me", {});
  const invited = await invite(admin, me.tenant_id, "keys-viewer", "viewer");
  await session("keys-viewer", invited.one_time_password); // chooses `${otp}-own`
  const context = await browser.newContext();
  const signIn = await context.request.post("/api/fn/login", {
    form: { username: "keys-viewer", password: `${invited.one_time_password}-own` },
  });
  expect(signIn.status()).toBe(200);
  const page = await context.newPage();
  const sent: string[] = [];
  page.on("request", (r) => r.url().includes("/api/fn/ssh_key_create") && sent.push(r.postData() ?? ""));

  await page.goto("/");
  await hydrated(page);
  await page.getByTestId("nav-keys").click();
  await expect(page.getByTestId("keys")).toContainText("SSH keys");
  await hydrated(page);

  const form = page.getByTestId("key-form");
  await form.getByTestId("key-name").fill("laptop");
  await form.getByTestId("key-text").fill(ED25519);
  await form.getByTestId("key-add").click();
  const row = page.locator('[data-testid="key-row"][data-name="laptop"]');
  await expect(row.getByTestId("key-fingerprint")).toHaveText(FINGERPRINT);
  await expect(row).toContainText("ssh-ed25519");
  await expect(row).toContainText("me@laptop");
  await expect(form.getByTestId("key-text")).toHaveValue("");

  // Garbage: one sentence next to the field saying what to paste.
  await form.getByTestId("key-name").fill("garbage");
  await form.getByTestId("key-text").fill("hello, this is my key");
  await form.getByTestId("key-add").click();
  await expect(page.getByTestId("key-error")).toHaveText(NOT_A_KEY);
  // The same key twice: the server says under which name it already is.
  await form.getByTestId("key-text").fill(ED25519);
  await form.getByTestId("key-add").click();
  await expect(page.getByTestId("key-error")).toContainText('You already added this key, as "laptop"');
  // A private key is refused in the browser and never sent.
  await form.getByTestId("key-text").fill(PRIVATE);
  await form.getByTestId("key-add").click();
  await expect(page.getByTestId("key-error")).toContainText("That is a private key");
  expect(sent.filter((body) => body.includes("PRIVATE"))).toEqual([]);
  await expect(page.getByTestId("key-row")).toHaveCount(1);

  await row.getByRole("button", { name: "Delete" }).click();
  await expect(page.getByTestId("key-row")).toHaveCount(0);
  await context.close();
});
