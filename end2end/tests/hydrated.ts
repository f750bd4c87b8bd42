import { Page } from "@playwright/test";

/// Waits until the WASM has hydrated the page: before that, forms post natively.
export async function hydrated(page: Page) {
  await page.locator("body[data-hydrated]").waitFor({ state: "attached" });
}
