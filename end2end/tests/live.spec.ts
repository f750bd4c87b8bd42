// The live event stream is for those who may read instances, and only while they may:
// it ends within seconds of sign-out, disabling or removal, and a user who must still
// choose a password gets nothing.
import { expect, test } from "@playwright/test";
import { adminPassword, base, call, cookieOf, invite, session } from "./api";

/// Opens the stream; `ended` resolves true when the server ends it, false if still open
/// after 30 s. (Wrapped in an object: an async function returning a promise would wait
/// for it.)
async function openStream(cookie: string): Promise<{ ended: Promise<boolean> }> {
  const r = await fetch(`${base}/api/v1/events`, { headers: { cookie }, signal: AbortSignal.timeout(30_000) });
  expect(r.status).toBe(200);
  const reader = r.body!.getReader();
  const ended = (async () => {
    try {
      while (!(await reader.read()).done);
      return true;
    } catch {
      return false; // timed out: still open
    }
  })();
  return { ended };
}

test("the live stream ends soon after sign-out or disabling, and refuses a pending password change", async () => {
  const admin = await session("admin", adminPassword);
  const me = await call<{ tenant_id: string }>(admin, "get_me", {});

  // Must choose a password first: refused.
  const pending = await invite(admin, me.tenant_id, "live-pending", "member");
  const pendingCtx = await session();
  expect((await pendingCtx.post("/api/fn/login", { form: { username: "live-pending", password: pending.one_time_password } })).status()).toBe(200);
  const refused = await fetch(`${base}/api/v1/events`, { headers: { cookie: await cookieOf(pendingCtx) } });
  expect(refused.status).toBe(403);

  // Disabled while watching: the stream ends within seconds.
  const invited = await invite(admin, me.tenant_id, "live-member", "member");
  const member = await session("live-member", invited.one_time_password);
  const { ended } = await openStream(await cookieOf(member));
  const started = Date.now();
  await call(admin, "user_set_disabled", { tenant_id: me.tenant_id, user_id: invited.user.id, disabled: "true" });
  expect(await ended, "the stream ended").toBe(true);
  expect(Date.now() - started).toBeLessThan(10_000);

  // Signed out elsewhere (the session row goes): the stream ends too.
  const second = await session("admin", adminPassword);
  const cookie = await cookieOf(second);
  const { ended: endedToo } = await openStream(cookie);
  expect((await second.post("/api/fn/logout", { form: {} })).status()).toBeLessThan(400);
  expect(await endedToo, "the stream ended after sign-out").toBe(true);
});
