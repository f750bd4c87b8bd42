// The instance page's Console tab: the VM's serial console in an xterm.js terminal over a
// WebSocket. A member sees the simulated guest's boot lines and prompt and types a line that
// the guest echoes; a viewer sees the same output, read-only, and what they type goes
// nowhere; deleting the VM disconnects with a reason and offers to reconnect. Without
// JavaScript the tab says it needs it; the WebSocket refuses other origins and anonymous
// visitors.
import { Browser, expect, Page, test } from "@playwright/test";
import { adminPassword, base, call, invite, session } from "./api";
import { hydrated } from "./hydrated";

/// A CPU-only VM on an Ubuntu image (other specs may have added newer images).
async function launch(admin: Awaited<ReturnType<typeof session>>, name: string): Promise<string> {
  const images = await call<{ name: string }[]>(admin, "image_list", { with_retired: "false" });
  const ubuntu = images.find((i) => i.name.startsWith("ubuntu-"))!.name;
  const [vm] = await call<{ id: string }[]>(admin, "instance_create", {
    "create[name]": name, "create[instance_type]": "c8m32", "create[image]": ubuntu,
  });
  return vm.id;
}

/// A browser page signed in as the API context's user.
async function pageAs(browser: Browser, ctx: Awaited<ReturnType<typeof session>>, errors: string[]): Promise<Page> {
  const context = await browser.newContext({ baseURL: base, storageState: await ctx.storageState() });
  const page = await context.newPage();
  page.on("pageerror", (e) => errors.push(e.message));
  return page;
}

test("a member types into the console, a viewer only watches", async ({ browser }) => {
  test.setTimeout(120_000);
  const errors: string[] = [];
  const admin = await session("admin", adminPassword);
  const me = await call<{ tenant_id: string }>(admin, "get_me", {});
  const m = await invite(admin, me.tenant_id, "console-member", "member");
  const v = await invite(admin, me.tenant_id, "console-viewer", "viewer");
  const member = await session("console-member", m.one_time_password);
  const viewer = await session("console-viewer", v.one_time_password);
  const vm = { id: await launch(admin, "console-vm") };
  await expect
    .poll(async () => (await call<{ instance: { state: string } }>(admin, "instance_get", { id: vm.id })).instance.state, { timeout: 20_000 })
    .toBe("Running");

  // The member opens the tab from the overview: the guest's boot lines and prompt.
  const mp = await pageAs(browser, member, errors);
  await mp.goto(`/instances/${vm.id}`);
  await hydrated(mp);
  await mp.getByTestId("tab-console").click();
  await expect(mp).toHaveURL(/\?tab=console$/);
  await expect(mp.getByTestId("console-status")).toHaveText("connected, read-write", { timeout: 10_000 });
  const memberScreen = mp.locator(".xterm-rows");
  await expect(memberScreen).toContainText("console-vm:~$");
  await expect(mp.getByTestId("instance-placement")).toBeHidden();
  await mp.getByTestId("console-screen").click();
  await mp.keyboard.type("echo typed-by-member");
  await mp.keyboard.press("Enter");
  await expect(memberScreen).toContainText("typed-by-member");

  // The viewer sees the same console, read-only; their keys reach nobody.
  const vp = await pageAs(browser, viewer, errors);
  await vp.goto(`/instances/${vm.id}?tab=console`);
  await hydrated(vp);
  await expect(vp.getByTestId("console-status")).toContainText("read-only", { timeout: 10_000 });
  const viewerScreen = vp.locator(".xterm-rows");
  await expect(viewerScreen).toContainText("typed-by-member");
  await vp.getByTestId("console-screen").click();
  await vp.keyboard.type("viewer-was-here");
  await vp.keyboard.press("Enter");
  // The member's next line arrives after anything the viewer's keys could have caused.
  await mp.keyboard.type("second-line");
  await expect(viewerScreen).toContainText("second-line");
  await expect(viewerScreen).not.toContainText("viewer-was-here");
  await expect(memberScreen).not.toContainText("viewer-was-here");

  // Deleting the VM ends the console with a reason; reconnecting says why it cannot.
  await call(admin, "instance_delete", { id: vm.id });
  await expect(mp.getByTestId("console-status")).toContainText("disconnected: ", { timeout: 20_000 });
  await mp.getByTestId("console-reconnect").click();
  await expect(mp.getByTestId("console-status")).toContainText(/disconnected: (console-vm is being deleted|No instance named)/, { timeout: 10_000 });
  expect(errors).toEqual([]);
});

test("without JavaScript the console tab says it needs it", async ({ browser }) => {
  const admin = await session("admin", adminPassword);
  const vm = { id: await launch(admin, "console-nojs") };
  const context = await browser.newContext({ baseURL: base, javaScriptEnabled: false, storageState: await admin.storageState() });
  const page = await context.newPage();
  await page.goto(`/instances/${vm.id}?tab=console`);
  await expect(page.getByTestId("console-needs-js")).toContainText("needs JavaScript");
  await expect(page.getByTestId("instance-placement")).toBeHidden();
  await page.goto(`/instances/${vm.id}`);
  await expect(page.getByTestId("instance-placement")).toBeVisible();
  await expect(page.getByTestId("instance-console")).toHaveCount(0);
  await call(admin, "instance_delete", { id: vm.id });
});

test("the console's WebSocket refuses other origins and anonymous visitors", async () => {
  const admin = await session("admin", adminPassword);
  const anonymous = await session();
  const path = "/instances/00000000-0000-4000-8000-000000000000/console/ws";
  const handshake = { Connection: "Upgrade", Upgrade: "websocket", "Sec-WebSocket-Version": "13", "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==" };
  const foreign = await admin.get(path, { headers: { ...handshake, Origin: "http://evil.example" } });
  expect(foreign.status()).toBe(403);
  expect(await foreign.text()).toContain("other origins");
  expect((await anonymous.get(path, { headers: handshake })).status()).toBe(401);
  // Signed in, from the portal's own origin: the unknown instance is the refusal.
  expect((await admin.get(path)).status()).toBe(404);
});
