// The sidebar's allowance line: re-read after each reply ends, since the worker charges the day's tokens then.
import { $, urls } from "./state.js";
import { t, fill, language } from "./i18n.js";

export async function refreshQuota() {
  const line = $("quota");
  if (!line) return;
  try {
    const response = await fetch(urls.quota, { credentials: "same-origin" });
    if (!response.ok) return;
    const q = await response.json();
    const parts = [q.tokens_left_today === null ? t("No daily token limit")
      : fill(t("%(left)s of %(per_day)s tokens left today"), {
        left: q.tokens_left_today.toLocaleString(language), per_day: q.tokens_per_day.toLocaleString(language),
      })];
    if (q.messages_per_minute) parts.push(fill(t("up to %(n)s messages a minute"), { n: q.messages_per_minute }));
    line.textContent = fill(t("%(line)s."), { line: parts.join(" · ") });
  } catch {
    // The line is a courtesy: an unreachable endpoint leaves the last figure shown.
  }
}
