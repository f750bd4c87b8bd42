// The walking skeleton through every layer: sign in → the fleet read from the database after
// the agents reported it → launch a 1-GPU VM → its state turns from provisioning to running
// in the page without a reload (host agent watch stream → event bus → SSE) → delete it →
// sign out ends the session.
import { expect, test } from "@playwright/test";

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

  // The simulated datacenter: 2 scalable units of 32 HGX H100 hosts, 8 GPUs each.
  await expect(page.getByTestId("stat-hosts")).toHaveText("64 / 64");
  await expect(page.getByTestId("stat-gpus-total")).toHaveText("512");
  await expect(page.getByTestId("stat-gpus-used")).toHaveText("0");
  await expect(page.getByTestId("host-card")).toHaveCount(64);
  await expect(page.getByTestId("live-indicator")).toHaveText("● live");
  await page.screenshot({ path: testInfo.outputPath("dashboard.png"), fullPage: true });
  await page.screenshot({ path: "test-results/dashboard.png", fullPage: true });

  // Everything from here on must happen without a page load.
  await page.evaluate(() => ((window as any).__sameDocument = true));

  await page.getByTestId("launch-name").fill("e2e-train-1");
  await page.getByTestId("launch-gpus").selectOption("1");
  await page.getByTestId("launch-submit").click();
  const row = page.locator('[data-testid="instance-row"][data-name="e2e-train-1"]');
  await expect(row.getByTestId("instance-state")).toHaveText("provisioning");
  await expect(row).toContainText("1 × H100");
  await expect(row.getByTestId("instance-state")).toHaveText("running", { timeout: 15_000 });
  await expect(page.getByTestId("stat-gpus-used")).toHaveText("1");

  // The same name again is refused with a sentence that says what to do.
  await page.getByTestId("launch-name").fill("e2e-train-1");
  await page.getByTestId("launch-submit").click();
  await expect(page.getByTestId("launch-error")).toContainText("already exists");

  await row.getByTestId("instance-delete").click();
  await expect(row).toHaveCount(0, { timeout: 15_000 });
  await expect(page.getByTestId("stat-gpus-used")).toHaveText("0");
  expect(await page.evaluate(() => (window as any).__sameDocument)).toBe(true);

  // Signing out ends the session on the server: the dashboard is gone afterwards.
  await page.getByTestId("logout").click();
  await expect(page).toHaveURL(/\/login$/);
  await page.goto("/");
  await expect(page).toHaveURL(/\/login$/);

  expect(consoleErrors).toEqual([]);
});

test("the live stream and the API refuse anonymous callers", async ({ request }) => {
  const events = await request.get("/api/v1/events");
  expect(events.status()).toBe(401);
  const list = await request.post("/api/fn/instance_list", { data: "" });
  expect(list.status()).toBe(401);
});
