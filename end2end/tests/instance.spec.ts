// The instance page: from the list to /instances/<id>, which shows the GPU modules with
// their PCI addresses, the image and its default user, and the launch saga's steps; a stop
// from the page follows the host's states live and adds the power saga's steps.
import { expect, test } from "@playwright/test";
import { hydrated } from "./hydrated";

const password = process.env.PORTAL_ADMIN_PASSWORD!;

test("open an instance from the list, see its GPUs and timeline, stop and delete it there", async ({ page }) => {
  test.setTimeout(120_000);
  const errors: string[] = [];
  page.on("pageerror", (e) => errors.push(e.message));
  await page.goto("/login");
  await hydrated(page);
  await page.getByTestId("login-username").fill("admin");
  await page.getByTestId("login-password").fill(password);
  await page.getByTestId("login-submit").click();
  await expect(page).toHaveURL(/\/$/);
  await hydrated(page);

  // Launch two GPUs on an Ubuntu image (other specs may have added newer images).
  // The options arrive with the catalog: wait for them rather than read an empty list.
  const imageValues = () =>
    page.getByTestId("launch-image").locator("option").evaluateAll((os) => os.map((o) => (o as HTMLOptionElement).value));
  await expect.poll(async () => (await imageValues()).some((v) => v.startsWith("ubuntu-"))).toBe(true);
  const ubuntu = (await imageValues()).find((v) => v.startsWith("ubuntu-"))!;
  await page.getByTestId("launch-name").fill("paged-vm");
  await page.getByTestId("launch-type").selectOption("h100x2");
  await page.getByTestId("launch-image").selectOption(ubuntu);
  await page.getByTestId("launch-submit").click();
  const row = page.locator('[data-testid="instance-row"][data-name="paged-vm"]');
  await expect(row.getByTestId("instance-state")).toHaveText("running", { timeout: 20_000 });

  await row.getByTestId("instance-link").click();
  await expect(page).toHaveURL(/\/instances\/[0-9a-f-]{36}$/);
  await hydrated(page);
  await expect(page.getByTestId("instance-name")).toHaveText("paged-vm");
  await expect(page.getByTestId("instance-state")).toHaveText("running");
  const gpus = page.getByTestId("instance-gpu");
  await expect(gpus).toHaveCount(2);
  for (const g of await gpus.all()) {
    await expect(g).toContainText("H100");
    await expect(g.locator("code")).toHaveText(/^[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]$/i);
  }
  // Its two SuperNICs joined the tenant's GPU fabric, each on its rail leaf.
  const fabric = page.getByTestId("instance-nic-fabric");
  await expect(fabric).toHaveCount(2);
  for (const f of await fabric.all()) {
    await expect(f).toHaveText(/^100\.64\.\d+\.\d+\/20 on su\d+-leaf\d · ready$/);
  }
  await expect(page.getByTestId("instance-vcpus")).toHaveText(/^\d+(, \d+)*$/);
  await expect(page.getByTestId("instance-image")).toHaveText(ubuntu);
  await expect(page.getByTestId("instance-user")).toHaveText("ubuntu");
  // Its port in the default subnet, and how to SSH to it.
  const ip = (await page.getByTestId("port-ip").textContent())!;
  expect(ip).toMatch(/^10\.0\.\d+\.\d+$/);
  await expect(page.getByTestId("instance-ssh")).toContainText(`ssh ubuntu@${ip}`);
  // Its port's counters, read from the DPU (again every 5 s while the page is open).
  const counters = page.getByTestId("port-counters");
  await expect(counters.locator('[data-testid="port-counters-row"][data-state="live"]')).toHaveCount(1, { timeout: 15_000 });
  await expect(counters.getByTestId("counters-in")).toContainText("pkts");
  const step = (saga: string, name: string, event: string) =>
    page.locator(`[data-testid="timeline-row"][data-saga="${saga}"][data-step="${name}"][data-event="${event}"]`);
  for (const name of ["claimed", "port_created", "port_attached", "fabric_joined", "partition_activated", "vm_ensured", "running"]) {
    await expect(step("instance_create", name, "succeeded")).toHaveCount(1);
  }

  // Stop it from the page: the state and the timeline follow without a reload.
  await page.evaluate(() => ((window as any).__sameDocument = true));
  await page.locator('[data-testid="instance-power"][data-action="stop"]').click();
  await expect(page.getByTestId("instance-state")).toHaveText("stopped", { timeout: 20_000 });
  await expect(step("instance_power", "power_set", "succeeded")).toHaveCount(1, { timeout: 10_000 });
  await expect(page.locator('[data-testid="instance-power"]')).toHaveCount(1);
  expect(await page.evaluate(() => (window as any).__sameDocument)).toBe(true);

  // Deleted from its page; the GPUs are free again for the specs that follow.
  await page.getByTestId("instance-delete").click();
  await expect(page.getByTestId("instance-state")).toHaveText("deleted", { timeout: 20_000 });
  await page.goto("/");
  await hydrated(page);
  await expect(page.locator('[data-testid="instance-row"][data-name="paged-vm"]')).toHaveCount(0);
  expect(errors).toEqual([]);
});
