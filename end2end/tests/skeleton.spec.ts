// The walking skeleton through every layer: sign in → the fleet read from the database after
// the agents reported it (the admin page) → launch a 1-GPU VM → its state turns from provisioning to running
// in the page without a reload (host agent watch stream → event bus → SSE) → delete it →
// sign out ends the session.
import { expect, test } from "@playwright/test";
import { base, call, session, sshEd25519 } from "./api";
import { hydrated } from "./hydrated";

const password = process.env.PORTAL_ADMIN_PASSWORD!;

test("sign in, see the fleet, launch and delete a 1-GPU VM live, sign out", async ({ page }, testInfo) => {
  const consoleErrors: string[] = [];
  // Refusals the test provokes (401 wrong password, 409 duplicate name) are logged by the
  // browser as failed loads; anything else on the console is a bug.
  const provoked = /^Failed to load resource: the server responded with a status of 40[19]/;
  page.on("console", (m) => m.type() === "error" && !provoked.test(m.text()) && consoleErrors.push(m.text()));
  page.on("pageerror", (e) => consoleErrors.push(e.message));

  // Anonymous visitors are sent to the sign-in page.
  await page.goto("/");
  await hydrated(page);
  await expect(page).toHaveURL(/\/login$/);

  // A wrong password is refused with a sentence, not a stack trace.
  await page.getByTestId("login-username").fill("admin");
  await page.getByTestId("login-password").fill("not-the-password");
  await page.getByTestId("login-submit").click();
  await expect(page.getByTestId("login-error")).toHaveText("Wrong username or password.");

  await page.getByTestId("login-password").fill(password);
  await page.getByTestId("login-submit").click();
  await expect(page).toHaveURL(/\/$/);
  await expect(page.getByTestId("whoami")).toContainText("admin");
  await hydrated(page);

  await expect(page.getByTestId("live-indicator")).toHaveText("● live");
  await expect(page.getByTestId("launchable")).toHaveText("64×8, 0×4, 0×2, 0×1");
  await page.screenshot({ path: testInfo.outputPath("dashboard.png"), fullPage: true });
  await page.screenshot({ path: "test-results/dashboard.png", fullPage: true });

  // The fleet is on the admin page, kept live there too: the simulated datacenter, 2 scalable
  // units of 32 HGX H100 hosts, 8 GPUs each.
  const fleet = await page.context().newPage();
  await fleet.goto("/admin");
  await hydrated(fleet);
  await expect(fleet.getByTestId("stat-hosts")).toHaveText("64 / 64");
  await expect(fleet.getByTestId("stat-gpus-total")).toHaveText("512");
  await expect(fleet.getByTestId("stat-gpus-used")).toHaveText("0");
  await expect(fleet.getByTestId("host-card")).toHaveCount(64);
  await fleet.screenshot({ path: testInfo.outputPath("fleet.png"), fullPage: true });

  // Everything from here on must happen without a page load.
  await page.evaluate(() => ((window as any).__sameDocument = true));

  await page.getByTestId("launch-name").fill("e2e-train-1");
  await page.getByTestId("launch-type").selectOption("h100x1");
  await page.getByTestId("launch-submit").click();
  const row = page.locator('[data-testid="instance-row"][data-name="e2e-train-1"]');
  await expect(row.getByTestId("instance-state")).toHaveText("provisioning");
  await expect(row).toContainText("1 × H100");
  await expect(row.getByTestId("instance-state")).toHaveText("running", { timeout: 15_000 });
  await expect(fleet.getByTestId("stat-gpus-used")).toHaveText("1");
  // Best fit: the 1-GPU VM broke one 8-GPU partition, and the rest of that host stays usable.
  await expect(page.getByTestId("launchable")).toHaveText("63×8, 1×4, 1×2, 1×1");
  await expect(page.locator('[data-resource="gpus:H100-SXM5-80GB"]')).toHaveText("gpus:H100-SXM5-80GB 1 / no limit");

  // The same name again is refused with a sentence that says what to do.
  await page.getByTestId("launch-name").fill("e2e-train-1");
  await page.getByTestId("launch-submit").click();
  await expect(page.getByTestId("launch-error")).toContainText("already exists");

  await row.getByTestId("instance-delete").click();
  await expect(row).toHaveCount(0, { timeout: 15_000 });
  await expect(fleet.getByTestId("stat-gpus-used")).toHaveText("0");
  await expect(page.getByTestId("launchable")).toHaveText("64×8, 0×4, 0×2, 0×1");
  expect(await page.evaluate(() => (window as any).__sameDocument)).toBe(true);

  // Signing out ends the session on the server: the dashboard is gone afterwards.
  await page.getByTestId("logout").click();
  await expect(page).toHaveURL(/\/login$/);
  await page.goto("/");
  await hydrated(page);
  await expect(page).toHaveURL(/\/login$/);

  expect(consoleErrors).toEqual([]);
});

test("the live stream and the API refuse anonymous callers", async ({ request }) => {
  const events = await request.get("/api/v1/events");
  expect(events.status()).toBe(401);
  const list = await request.post("/api/fn/instance_list", { data: "" });
  expect(list.status()).toBe(401);
  // A forged cross-site form post is refused before it reaches sign-in or any handler.
  const forged = await request.post("/api/fn/login", {
    headers: { "Sec-Fetch-Site": "cross-site", Origin: "http://evil.example" },
    form: { username: "admin", password },
  });
  expect(forged.status()).toBe(403);
});

test("a provider admin adds an instance type and caps GPUs with a quota", async ({ page }) => {
  await page.goto("/login");
  await hydrated(page);
  await page.getByTestId("login-username").fill("admin");
  await page.getByTestId("login-password").fill(password);
  await page.getByTestId("login-submit").click();
  await expect(page.getByTestId("whoami")).toContainText("admin");
  await hydrated(page);

  await page.getByTestId("nav-admin").click();

  await hydrated(page);
  for (const seeded of ["h100x1", "h100x2", "h100x4", "h100x8", "c8m32", "c16m64"]) {
    await expect(page.locator(`[data-testid="type-row"][data-name="${seeded}"]`)).toBeVisible();
  }
  const form = page.getByTestId("type-form");
  await form.locator('input[name="create[name]"]').fill("h100x2-lite");
  await form.locator('input[name="create[gpu_model]"]').fill("H100-SXM5-80GB");
  await form.locator('select[name="create[gpu_count]"]').selectOption("2");
  await form.locator('input[name="create[vcpus]"]').fill("16");
  await form.getByRole("button", { name: "Add type" }).click();
  await expect(page.locator('[data-testid="type-row"][data-name="h100x2-lite"]')).toContainText("2 × H100-SXM5-80GB · 16 vCPUs");

  // A bad limit is refused with a sentence.
  const quota = page.getByTestId("quota-form");
  await quota.locator('input[name="resource"]').fill("gpus:H100-SXM5-80GB");
  await quota.locator('input[name="limit"]').fill("two");
  await quota.getByRole("button", { name: "Set quota" }).click();
  await expect(page.getByTestId("admin-error")).toContainText("is not a whole number");
  await quota.locator('input[name="limit"]').fill("1");
  await quota.getByRole("button", { name: "Set quota" }).click();
  await expect(page.getByTestId("quota-table")).toContainText("gpus:H100-SXM5-80GB");

  // The new type is offered at launch, and the quota refuses it.
  await page.goto("/");
  await hydrated(page);
  await page.getByTestId("launch-name").fill("too-big");
  await page.getByTestId("launch-type").selectOption("h100x2-lite");
  await page.getByTestId("launch-submit").click();
  await expect(page.getByTestId("launch-error")).toContainText("quota of 1");

  // Lift the limit again: the provider's own tenant is unlimited.
  await page.getByTestId("nav-admin").click();
  await hydrated(page);
  await quota.locator('input[name="resource"]').fill("gpus:H100-SXM5-80GB");
  await quota.locator('input[name="limit"]').fill("unlimited");
  await quota.getByRole("button", { name: "Set quota" }).click();
  await expect(page.getByTestId("quota-table")).toContainText("no limit");
});

test("a cluster group of two 8-GPU VMs launches all at once into one scalable unit", async ({ page }) => {
  await page.goto("/login");
  await hydrated(page);
  await page.getByTestId("login-username").fill("admin");
  await page.getByTestId("login-password").fill(password);
  await page.getByTestId("login-submit").click();
  await expect(page.getByTestId("whoami")).toContainText("admin");
  await hydrated(page);

  await page.getByTestId("launch-name").fill("dist");
  await page.getByTestId("launch-type").selectOption("h100x8");
  await page.getByTestId("launch-count").fill("2");
  await page.getByTestId("launch-placement").selectOption("cluster");
  await page.getByTestId("launch-submit").click();
  const members = page.locator('[data-testid="instance-row"][data-name^="dist-"]');
  await expect(members).toHaveCount(2);
  for (const name of ["dist-1", "dist-2"]) {
    const row = page.locator(`[data-testid="instance-row"][data-name="${name}"]`);
    await expect(row.getByTestId("instance-state")).toHaveText("running", { timeout: 15_000 });
  }
  // Both hosts are in the same scalable unit: "suN-hMM".
  const hosts = await members.locator("td:nth-child(6)").allTextContents();
  expect(new Set(hosts.map((h) => h.split("-")[0])).size).toBe(1);
  for (const name of ["dist-1", "dist-2"]) {
    await page.locator(`[data-testid="instance-row"][data-name="${name}"]`).getByTestId("instance-delete").click();
  }
  await expect(members).toHaveCount(0, { timeout: 15_000 });
});

test("a provider admin adds and retires an image; a launch boots the chosen one, stops and starts", async ({ page }) => {
  await page.goto("/login");
  await hydrated(page);
  await page.getByTestId("login-username").fill("admin");
  await page.getByTestId("login-password").fill(password);
  await page.getByTestId("login-submit").click();
  await expect(page.getByTestId("whoami")).toContainText("admin");
  await hydrated(page);

  await page.getByTestId("nav-admin").click();
  await hydrated(page);
  for (const seeded of ["ubuntu-24.04-cuda-12.8", "ubuntu-22.04-cuda-12.4", "tiny-test"]) {
    await expect(page.locator(`[data-testid="image-row"][data-name="${seeded}"]`)).toBeVisible();
  }
  const form = page.getByTestId("image-form");
  await form.locator('input[name="create[name]"]').fill("debian-12");
  await form.locator('input[name="create[os]"]').fill("Debian 12");
  await form.locator('input[name="create[default_user]"]').fill("debian");
  await form.locator('input[name="create[source]"]').fill("/srv/images/debian-12.qcow2");
  await form.getByRole("button", { name: "Add image" }).click();
  await expect(page.getByTestId("image-error")).toContainText("is not a file name in the image store");
  await form.locator('input[name="create[source]"]').fill("debian-12.qcow2");
  await form.getByRole("button", { name: "Add image" }).click();
  await expect(page.locator('[data-testid="image-row"][data-name="debian-12"]')).toContainText("Debian 12");

  // A key of the admin's, to put into the VM.
  await page.getByTestId("nav-keys").click();
  await hydrated(page);
  const keyForm = page.getByTestId("key-form");
  await keyForm.getByTestId("key-name").fill("e2e-laptop");
  await keyForm.getByTestId("key-text").fill(sshEd25519(77, "me@laptop"));
  await keyForm.getByTestId("key-add").click();
  await expect(page.locator('[data-testid="key-row"]').filter({ hasText: "e2e-laptop" })).toBeVisible();

  // The new image is offered at launch (first: the newest) and recorded with the instance.
  await page.goto("/");
  await hydrated(page);
  await expect(page.getByTestId("launch-image").locator("option").first()).toHaveAttribute("value", "debian-12");
  await page.getByTestId("launch-name").fill("on-debian");
  await page.getByTestId("launch-type").selectOption("c8m32");
  await page.getByTestId("launch-image").selectOption("debian-12");
  await page.getByTestId("launch-keys").getByLabel("e2e-laptop").check();
  await page.getByTestId("launch-submit").click();
  const row = page.locator('[data-testid="instance-row"][data-name="on-debian"]');
  await expect(row.getByTestId("instance-image")).toHaveText("debian-12");
  await expect(row.getByTestId("instance-keys")).toContainText("e2e-laptop");

  // Stop and start it: the page follows the host's states live.
  await expect(row.getByTestId("instance-state")).toHaveText("running", { timeout: 20_000 });
  await row.locator('[data-testid="instance-power"][data-action="stop"]').click();
  await expect(row.getByTestId("instance-state")).toHaveText("stopped", { timeout: 20_000 });
  await expect(row.locator('[data-testid="instance-power"]')).toHaveCount(1);
  await row.locator('[data-testid="instance-power"][data-action="start"]').click();
  await expect(row.getByTestId("instance-state")).toHaveText("running", { timeout: 20_000 });

  // Retired: no longer offered; the instance keeps it.
  await page.getByTestId("nav-admin").click();
  await hydrated(page);
  await page.locator('[data-testid="image-row"][data-name="debian-12"]').getByTestId("image-retire").click();
  await expect(page.locator('[data-testid="image-row"][data-name="debian-12"]').getByTestId("image-retired")).toBeVisible();
  await page.goto("/");
  await hydrated(page);
  await expect(page.getByTestId("launch-image").locator('option[value="debian-12"]')).toHaveCount(0);
  await expect(row.getByTestId("instance-image")).toHaveText("debian-12");
  await row.getByTestId("instance-delete").click();
  await expect(row.getByTestId("instance-state")).toHaveText(/deleting|deleted/);
});

test("without JavaScript the launch form still launches, and a refusal comes back as its sentence", async ({ browser }) => {
  const admin = await session("admin", password);
  const context = await browser.newContext({ baseURL: base, javaScriptEnabled: false, storageState: await admin.storageState() });
  const page = await context.newPage();
  await page.goto("/");
  // The browser posts the form itself and follows the server's redirect back to the page
  // (whose address the server cleans of any earlier error, leaving an empty "?").
  await page.getByTestId("launch-name").fill("nojs-1");
  await page.getByTestId("launch-type").selectOption("c8m32");
  await page.getByTestId("launch-submit").click();
  await expect(page).toHaveURL(/\/\??$/);
  const row = page.locator('[data-testid="instance-row"][data-name="nojs-1"]');
  await expect(row).toHaveCount(1);
  await expect(page.getByTestId("launch-error")).toHaveCount(0);

  // The same name again: the server sends the page back with its error, which it shows.
  await page.getByTestId("launch-name").fill("nojs-1");
  await page.getByTestId("launch-type").selectOption("c8m32");
  await page.getByTestId("launch-submit").click();
  await expect(page).toHaveURL(/__err=/);
  await expect(page.getByTestId("launch-error")).toContainText("already exists");

  const list = await call<{ id: string; name: string }[]>(admin, "instance_list", {});
  for (const vm of list.filter((i) => i.name === "nojs-1")) await call(admin, "instance_delete", { id: vm.id });
  await context.close();
});
