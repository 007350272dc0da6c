// Album Publisher's pages: local times, the photo picker and the album's live progress.
// Everything works without this script (plain forms, server-rendered state); it adds the
// live updates. Text from the server is only ever set with textContent, never as HTML.
"use strict";

(() => {
  const TIME = { hour: "2-digit", minute: "2-digit", second: "2-digit" };
  const DATETIME = { dateStyle: "medium", timeStyle: "short" };

  function localTimes(root) {
    for (const el of root.querySelectorAll("time[data-local]")) {
      const when = new Date(el.getAttribute("datetime"));
      if (Number.isNaN(when.getTime())) continue;
      el.textContent = el.dataset.local === "time"
        ? when.toLocaleTimeString([], TIME) : when.toLocaleString([], DATETIME);
    }
  }

  function span(className, text) {
    const el = document.createElement("span");
    el.className = className;
    el.textContent = text;
    return el;
  }

  // -- the publish page -------------------------------------------------------------------
  function picker(form) {
    const boxes = [...form.querySelectorAll('input[name="images"]')];
    const count = form.querySelector('[data-role="count"]');
    const max = Number(form.dataset.max);
    const update = () => {
      const n = boxes.filter((box) => box.checked).length;
      count.textContent = n === 0 ? "None selected"
        : `${n} selected` + (n > max ? ` (an album holds at most ${max})` : "");
    };
    form.addEventListener("change", update);
    for (const button of form.querySelectorAll("[data-select]")) {
      button.addEventListener("click", () => {
        for (const box of boxes) box.checked = button.dataset.select === "all";
        update();
      });
    }
    form.addEventListener("submit", () => {
      // A second click must not publish the album twice.
      setTimeout(() => { form.querySelector('button[type="submit"]').disabled = true; }, 0);
    });
    update();
    form.querySelector('[data-role="error"]')?.focus();
  }

  // -- the album page ---------------------------------------------------------------------
  function albumPage(section) {
    const find = (role, root = section) => root.querySelector(`[data-role="${role}"]`);
    // The photos this page shows (a page of the album's), by their index in the album: the
    // stream names a changed image by it.
    const items = new Map([...section.querySelectorAll(".photo")].map(
      (item) => [Number(item.dataset.index), item]));
    const shown = new Map();
    let current = null;  // the album as last sent in full, with the changes since applied
    const live = find("live");
    let source = null;
    let retried = false;

    function setLive(status, text) {
      live.dataset.status = status;
      live.textContent = text;
    }

    function setText(el, text) {
      if (el.textContent !== text) el.textContent = text;  // unchanged text is not re-announced
    }

    function badge(el, state, label) {
      el.dataset.state = state;
      setText(el, label);
    }

    function detail(el, image) {
      const parts = [];
      if (image.fb_url) {
        const link = document.createElement("a");
        link.href = image.fb_url;
        link.target = "_blank";
        link.rel = "noopener noreferrer";
        link.append("View on Facebook", span("sr-only", " (opens in a new tab)"));
        parts.push(link);
      } else {
        parts.push(image.detail);
        if (image.code) parts.push(" ", span("code", `(${image.code})`));
        if (image.next_attempt_at) {
          const when = document.createElement("time");
          when.dateTime = image.next_attempt_at;
          when.dataset.local = "time";
          const next = span("next", "Next try at ");
          next.append(when, ".");
          parts.push(" ", next);
        }
      }
      el.replaceChildren(...parts);
      localTimes(el);
    }

    function progress(album) {
      const bar = find("bar");
      bar.setAttribute("aria-valuenow", album.uploaded);
      bar.setAttribute("aria-valuetext", album.summary);
      find("bar-ok").setAttribute("width", album.percent_uploaded);
      find("bar-failed").setAttribute("x", album.percent_uploaded);
      find("bar-failed").setAttribute("width", album.percent_failed);
      setText(find("count-uploaded"), String(album.uploaded));
      setText(find("count-pending"), String(album.pending));
      setText(find("count-failed"), String(album.failed));
    }

    function render(album, images) {
      badge(find("album-state"), album.state, album.state_label);
      setText(find("summary"), album.summary);
      setText(find("destination"), album.where);
      const postLink = find("post-link");
      if (album.post_url) postLink.href = album.post_url;
      postLink.hidden = !album.post_url;
      progress(album);
      find("retry").hidden = album.failed === 0;
      setText(find("retry-text"), album.retry_text);
      for (const image of images) {
        const item = items.get(image.index);
        const signature = JSON.stringify(image);
        if (!item || shown.get(image.index) === signature) continue;
        shown.set(image.index, signature);
        item.dataset.state = image.state;
        badge(find("badge", item), image.state, image.label);
        detail(find("detail", item), image);
      }
      live.hidden = album.settled;
    }

    function received(album, images) {
      setLive("live", "Live");
      render(album, images);
      if (album.settled) {  // nothing changes any more until someone retries
        source.close();
        source = null;
        if (retried) retryStatus.textContent = "";  // the summary tells how the retry went
        retried = false;
      }
    }

    function connect() {
      source?.close();
      source = new EventSource(section.dataset.eventsUrl);
      live.hidden = false;
      // The whole album first (and again after each reconnect), then only what changed.
      source.addEventListener("album", (event) => {
        current = JSON.parse(event.data);
        received(current, current.images);
      });
      source.addEventListener("changes", (event) => {
        if (!current) return;
        const changes = JSON.parse(event.data);
        Object.assign(current, changes.album);
        for (const image of changes.images) current.images[image.index] = image;
        received(current, changes.images);
      });
      source.addEventListener("gone", () => { source.close(); source = null; live.hidden = true; });
      source.addEventListener("error", () => {
        if (!source) return;
        // The browser reconnects by itself (the server ends long streams on purpose)...
        if (source.readyState !== EventSource.CLOSED) {
          setLive("reconnecting", "Reconnecting…");
          return;
        }
        // ...but not after a refusal (429: too many live pages open for this user).
        source = null;
        setLive("reconnecting", "Live updates paused (too many pages open); trying again…");
        setTimeout(connect, 15000);
      });
    }

    const retryForm = find("retry-form");
    const retryStatus = find("retry-status");
    retryForm.addEventListener("submit", async (event) => {
      event.preventDefault();
      const button = retryForm.querySelector("button");
      button.disabled = true;
      try {
        const response = await fetch(retryForm.action, {
          method: "POST", body: new FormData(retryForm), credentials: "same-origin",
          headers: { Accept: "application/json" },
        });
        const body = await response.json();
        retryStatus.textContent = body.message || body.error || "";
        retried = response.ok;
        connect();
      } catch {
        retryStatus.textContent = "Could not reach the server. Check your connection and try again.";
      } finally {
        button.disabled = false;
      }
    });

    if (section.dataset.settled !== "true") connect();
  }

  document.addEventListener("DOMContentLoaded", () => {
    localTimes(document);
    for (const form of document.querySelectorAll("[data-picker]")) picker(form);
    for (const section of document.querySelectorAll("[data-album]")) albumPage(section);
  });
})();
