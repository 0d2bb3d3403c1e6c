"""Drives Debian's Chromium (never a downloaded browser) with Playwright through the dashboards,
as a product lead would: log in with a token, open every dashboard, look at each card, change a
filter in the URL, run axe-core on the Overview, take screenshots. Prints one JSON report for the
Rust test to check (tests/dashboards.rs); asserts nothing itself.

    python dashboards_browser.py BASE_URL TOKEN PAGES_JSON AXE_JS SCREENSHOT_DIR [SERVER]

PAGES_JSON maps each dashboard's slug to the query string to open it with.
"""

import json
import sys
from urllib.parse import urlparse

from playwright.sync_api import sync_playwright

CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-extensions",
]


def cards_of(page):
    """Each card: its id, title, whether it has a chart, its table's header and rows."""
    return page.evaluate(
        """() => Array.from(document.querySelectorAll('section.card')).map(card => ({
            id: card.id,
            title: card.querySelector('h2').textContent.trim(),
            svg: card.querySelector('figure svg') ? card.querySelector('figure svg').outerHTML.length : 0,
            points: card.querySelectorAll('figure svg circle, figure svg rect').length,
            headers: Array.from(card.querySelectorAll('thead th')).map(th => th.textContent.trim()),
            rows: Array.from(card.querySelectorAll('tbody tr')).map(tr =>
                Array.from(tr.querySelectorAll('th, td')).map(td => td.textContent.trim())),
            big: card.querySelector('.big') ? card.querySelector('.big').textContent.trim() : null,
            csv: card.querySelector('.downloads a') ? card.querySelector('.downloads a').getAttribute('href') : null,
            // Content wider than the card spills over its neighbours or off the page.
            sticks_out: card.scrollWidth > card.clientWidth + 1,
            // A table wider than its box must scroll, else its right columns cannot be read.
            cut_tables: Array.from(card.querySelectorAll('table')).filter(table => {
                let box = table.parentElement;
                while (box && box !== card && !['auto', 'scroll'].includes(getComputedStyle(box).overflowX)) {
                    box = box.parentElement;
                }
                const rect = table.getBoundingClientRect();
                const edge = (box && box !== card ? box : card).getBoundingClientRect();
                const scrolls = box && box !== card && box.scrollWidth > box.clientWidth;
                return rect.width > 0 && rect.right > edge.right + 1 && !scrolls;
            }).length,
            // Whether each table fits its box without scrolling.
            tables_fit: Array.from(card.querySelectorAll('.table-wrap')).every(wrap =>
                wrap.scrollWidth <= wrap.clientWidth + 1 || wrap.clientWidth === 0),
            // Scrolled to its far right, a table still shows what each row is.
            labels_stay: Array.from(card.querySelectorAll('.table-wrap')).every(wrap => {
                const label = wrap.querySelector('tbody th');
                if (!label || wrap.scrollWidth <= wrap.clientWidth + 1) return true;
                wrap.scrollLeft = wrap.scrollWidth;
                const stays = label.getBoundingClientRect().left >= wrap.getBoundingClientRect().left - 1;
                wrap.scrollLeft = 0;
                return stays;
            }),
            // A box that scrolls can be scrolled from the keyboard.
            wraps_focusable: Array.from(card.querySelectorAll('.table-wrap')).every(wrap =>
                wrap.getAttribute('tabindex') === '0'),
        }))"""
    )


def main():
    base, token, pages, axe_js, shots = sys.argv[1:6]
    server = sys.argv[6] if len(sys.argv) > 6 else None
    pages = json.loads(pages)
    query = pages["overview"]
    host = urlparse(base).netloc
    report = {"console_errors": [], "outside_requests": [], "pages": {}, "failed_requests": []}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        page = context.new_page()
        page.on(
            "console",
            lambda m: report["console_errors"].append(m.text) if m.type == "error" else None,
        )
        page.on(
            "request",
            lambda r: report["outside_requests"].append(r.url)
            if urlparse(r.url).netloc not in (host, "") and not r.url.startswith("data:")
            else None,
        )
        page.on("requestfailed", lambda r: report["failed_requests"].append(r.url))

        # Without a session: the login page.
        page.goto(f"{base}/d/overview?{query}")
        report["without_session"] = urlparse(page.url).path
        page.fill("#token", token)
        page.click("button[type=submit]")
        page.wait_for_load_state("load")
        report["after_login"] = urlparse(page.url).path

        for slug, slug_query in pages.items():
            response = page.goto(f"{base}/d/{slug}?{slug_query}")
            page.wait_for_load_state("load")
            cards = cards_of(page)
            weight = len(page.content().encode())
            page.screenshot(path=f"{shots}/{slug}.png", full_page=True)
            options = page.eval_on_selector_all(
                "select[name=server] option", "os => os.map(o => o.value).filter(v => v)"
            )
            report["pages"][slug] = {
                "status": response.status,
                "cards": cards,
                "weight": weight,
                "server_options": options,
                "title": page.title(),
                "lang": page.get_attribute("html", "lang"),
            }

        # The monthly reports: the list, and a report's offline HTML opened from it.
        response = page.goto(f"{base}/reports")
        page.wait_for_load_state("load")
        links = page.eval_on_selector_all(".downloads a", "as => as.map(a => a.getAttribute('href'))")
        report["reports"] = {"status": response.status, "links": links}
        html_links = [l for l in links if l.endswith(".html")]
        if html_links:
            response = page.goto(f"{base}{html_links[0]}")
            page.wait_for_load_state("load")
            report["reports"]["html"] = {
                "url": html_links[0],
                "status": response.status,
                "charts": page.eval_on_selector_all("figure svg", "s => s.length"),
                "tables": page.eval_on_selector_all("table", "t => t.length"),
                "lang": page.get_attribute("html", "lang"),
            }
            page.screenshot(path=f"{shots}/report.png", full_page=True)

        # A filter changed in the URL changes the page.
        if server:
            page.goto(f"{base}/d/overview?{query}&server={server}")
            page.wait_for_load_state("load")
            report["filtered"] = cards_of(page)

        # English.
        page.goto(f"{base}/d/overview?{query}&lang=en")
        report["english"] = {"lang": page.get_attribute("html", "lang"), "title": page.title()}

        # A phone: one column.
        phone = browser.new_context(viewport={"width": 390, "height": 800}, storage_state=context.storage_state())
        small = phone.new_page()
        small.goto(f"{base}/d/overview?{query}")
        report["phone_columns"] = small.evaluate(
            "() => getComputedStyle(document.querySelector('.cards')).gridTemplateColumns.split(' ').length"
        )
        small.screenshot(path=f"{shots}/overview-phone.png", full_page=True)
        # The widest tables (a column per server) on a phone: each card holds its content.
        small.goto(f"{base}/d/ministries?{pages.get('ministries', query)}")
        report["phone_ministries"] = cards_of(small)
        phone.close()

        # Accessibility: axe-core, injected from its npm package (the page's policy forbids
        # scripts, so this context bypasses it for the check only).
        audit = browser.new_context(bypass_csp=True, storage_state=context.storage_state())
        checked = audit.new_page()
        report["axe"] = []
        audited = [f"/d/overview?{query}", "/reports"]
        if report["reports"].get("html"):
            audited.append(report["reports"]["html"]["url"])
        for path in audited:
            checked.goto(f"{base}{path}")
            checked.add_script_tag(path=axe_js)
            results = checked.evaluate("async () => await axe.run(document, {resultTypes: ['violations']})")
            report["axe"] += [
                {"page": path, "id": v["id"], "impact": v["impact"], "nodes": len(v["nodes"]), "help": v["help"]}
                for v in results["violations"]
            ]
        audit.close()

        # Log out: no page any more.
        page.goto(f"{base}/d/overview?{query}")
        page.click("header form button[type=submit]")
        page.wait_for_load_state("load")
        page.goto(f"{base}/d/overview?{query}")
        report["after_logout"] = urlparse(page.url).path
        browser.close()
    print(json.dumps(report))


if __name__ == "__main__":
    main()
