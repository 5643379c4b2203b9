// The dashboard's only script: live parts of a page (Server-Sent Events), confirmations of
// actions, and a namespace filter that applies on change. Every page works without it, but
// for live updates (confirmations then come as a page of their own).
"use strict";

// A keyboard user's focus inside a swapped part moves to the same link or button in its new
// HTML (by id, link target, or form and label), rather than being lost with the old element.
function focusKey(element) {
  if (element.id) return "#" + element.id;
  if (element.getAttribute("href")) return "a:" + element.getAttribute("href");
  if (element.form) return "form:" + element.form.getAttribute("action") + ":" + element.textContent;
  return null;
}

function swapKeepingFocus(target, html) {
  const focused = document.activeElement;
  const within = focused && focused !== target && target.contains(focused);
  const key = within ? focusKey(focused) : null;
  target.innerHTML = html;
  if (key) {
    const again = Array.from(target.querySelectorAll("a[href], button, input, select, textarea"))
      .find((element) => focusKey(element) === key);
    if (again) again.focus();
  }
}

function startLive(indicator) {
  const text = indicator.querySelector(".live-text");
  const source = new EventSource(indicator.dataset.live);
  const say = (state, words) => {
    indicator.dataset.state = state;
    text.textContent = words;
  };
  // "swap": the id of an element, a newline, then its new HTML (rendered by the server)
  source.addEventListener("swap", (event) => {
    const cut = event.data.indexOf("\n");
    const target = document.getElementById(event.data.slice(0, cut));
    if (target) swapKeepingFocus(target, event.data.slice(cut + 1));
  });
  source.addEventListener("live", (event) => say("live", "Live · " + event.data));
  source.addEventListener("stale", (event) => say("stale", "Not updating: " + event.data));
  // the key was revoked or expired: the page itself goes to the login page
  source.addEventListener("signed-out", () => {
    source.close();
    window.location.reload();
  });
  source.onerror = () => {
    if (source.readyState === EventSource.CLOSED) {
      // refused outright (signed out meanwhile): reloading shows why
      window.location.reload();
    } else {
      say("stale", "Reconnecting…");
    }
  };
}

// Listened for on the document, so that forms in parts swapped in later ask too.
// A button's own question (data-confirm) wins over its form's; "{n}" and "{s}" become how many
// tasks are ticked for the form, and a plural "s".
function confirmBeforeSubmit(event) {
  const form = event.target;
  if (!form.matches("form[data-confirm]")) return;
  let question = (event.submitter && event.submitter.dataset.confirm) || form.dataset.confirm;
  if (question.includes("{n}")) {
    const ticked = Array.from(form.elements).filter((e) => e.name === "ids" && e.checked).length;
    if (ticked === 0) return; // nothing to ask about: the server says none is selected
    question = question.replace("{n}", String(ticked)).replace("{s}", ticked === 1 ? "" : "s");
  }
  if (!window.confirm(question)) {
    event.preventDefault();
    return;
  }
  const confirmed = document.createElement("input");
  confirmed.type = "hidden";
  confirmed.name = "confirmed";
  confirmed.value = "yes";
  form.appendChild(confirmed);
}

// A form's JSON field is parsed before the form is sent: the browser shows the error on the
// field itself (the server checks it again, and names it too).
function checkJsonBeforeSubmit(form) {
  const field = form.elements.namedItem(form.dataset.json);
  field.addEventListener("input", () => field.setCustomValidity(""));
  form.addEventListener("submit", (event) => {
    try {
      JSON.parse(field.value);
      field.setCustomValidity("");
    } catch (error) {
      field.setCustomValidity("Payload: not JSON (" + error.message + ")");
      field.reportValidity();
      event.preventDefault();
    }
  });
}

document.addEventListener("DOMContentLoaded", () => {
  document.querySelectorAll("form[data-json]").forEach(checkJsonBeforeSubmit);
  document.querySelectorAll("[data-live]").forEach(startLive);
  document.addEventListener("submit", confirmBeforeSubmit);
  document.querySelectorAll("select[data-autosubmit]").forEach((select) => {
    select.addEventListener("change", () => select.form.submit());
  });
});
