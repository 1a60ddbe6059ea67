"""A small labelled corpus: four documents in four formats, written by the tests, and held-out
questions (paraphrased, not copied from the text) with the section that answers each.

Sections are ``(location, text)``; the location is a page number for the PDF and a heading
for the others. Each question is labelled with ``(file name, location)``.
"""

from __future__ import annotations

from pathlib import Path

PUMP_PDF = [  # one section per page
    "Priming. Before the first start, fill the pump housing with distilled water through the "
    "brass plug on top. Never run the pump dry: the ceramic seal cracks within seconds "
    "without liquid.",
    "Operating pressure. The pump delivers up to 6.5 bar. The pressure switch cuts out at 4.2 "
    "bar and restarts the motor when the pressure falls below 2.8 bar.",
    "Maintenance schedule. Clean the intake strainer every month. Replace the impeller "
    "gasket every 2,000 operating hours or every two years, whichever comes first.",
    "Error codes. E17 means the motor overheated; let it cool for thirty minutes. E22 signals "
    "that the water level sensor lost contact; check the float cable.",
    "Warranty. The housing carries a five-year warranty. Electrical parts are covered for two "
    "years. Damage from frost voids the warranty.",
    "Noise. A humming sound at start-up is normal. A rattling noise usually means gravel in "
    "the impeller chamber; open the cover and rinse it.",
]

HANDBOOK_DOCX = {
    "Vacation": "Full-time staff receive 28 days of paid leave per calendar year. Up to five "
                "unused days may be carried into the first quarter of the next year.",
    "Remote work": "Employees may work from home up to three days a week after their "
                   "probation period, provided their manager approves the schedule.",
    "Expenses": "Travel costs are reimbursed within 14 days when the receipts are uploaded to "
                "the finance portal. Meals abroad are capped at 45 euros per day.",
    "Security badges": "A lost badge must be reported to the front desk within 24 hours; the "
                       "replacement costs ten euros.",
    "Parking": "The underground garage has 40 spaces, assigned by lottery every January. "
               "Bicycles go in the courtyard racks.",
}

GARDEN_MD = {
    "Tomatoes": "Plant tomato seedlings after the last frost, 60 centimetres apart. Pinch out "
                "the side shoots every week so the plant puts its energy into the fruit.",
    "Composting": "A good compost heap mixes green kitchen scraps with brown material such as "
                  "dry leaves or cardboard, roughly one part green to three parts brown. Turn "
                  "it every two weeks.",
    "Watering": "Water early in the morning, at the base of the plant, so the leaves stay dry "
                "and fungal diseases do not spread.",
    "Pest control": "Aphids can be washed off with a jet of soapy water; ladybirds eat them "
                    "and are worth attracting with marigolds.",
    "Pruning roses": "Cut roses back in late winter, just above an outward-facing bud, "
                     "removing dead and crossing stems first.",
}

ASTRONOMY_HTML = {
    "Lunar phases": "The Moon takes about 29.5 days to go through all its phases, from new "
                    "moon to full moon and back.",
    "Mars": "Mars looks red because iron oxide, rust, covers its dusty surface. Its two "
            "small moons are called Phobos and Deimos.",
    "Telescopes": "A refractor gathers light with a lens, a reflector with a curved mirror. "
                  "Aperture, not magnification, decides how faint an object you can see.",
    "Meteor showers": "The Perseids peak around the twelfth of August, when Earth passes "
                      "through debris left by comet Swift-Tuttle.",
    "Eclipses": "A total solar eclipse happens when the Moon covers the Sun completely; "
                "totality never lasts longer than about seven and a half minutes.",
}

QUESTIONS: list[tuple[str, str, object]] = [
    ("What should I pour into the pump before switching it on for the first time?",
     "pump-manual.pdf", 1),
    ("At which pressure does the switch turn the motor off?", "pump-manual.pdf", 2),
    ("How often do I need to change the impeller gasket?", "pump-manual.pdf", 3),
    ("The display shows E17, what happened?", "pump-manual.pdf", 4),
    ("Does freezing damage count under the guarantee?", "pump-manual.pdf", 5),
    ("Why is my pump making a clattering sound?", "pump-manual.pdf", 6),
    ("How many days off do I get each year?", "employee-handbook.docx", "Vacation"),
    ("Can I do my job from my apartment?", "employee-handbook.docx", "Remote work"),
    ("What is the daily limit for food on business trips?", "employee-handbook.docx",
     "Expenses"),
    ("I misplaced my access card, what now?", "employee-handbook.docx", "Security badges"),
    ("How are car spots in the garage given out?", "employee-handbook.docx", "Parking"),
    ("How far apart should tomato plants be?", "garden-guide.md", "Tomatoes"),
    ("What ratio of kitchen waste to dry leaves makes good compost?", "garden-guide.md",
     "Composting"),
    ("When is the best time of day to water the garden?", "garden-guide.md", "Watering"),
    ("How do I get rid of greenfly on my plants?", "garden-guide.md", "Pest control"),
    ("Where exactly should I cut a rose stem?", "garden-guide.md", "Pruning roses"),
    ("How long is a lunar cycle?", "astronomy.html", "Lunar phases"),
    ("What gives the red planet its colour?", "astronomy.html", "Mars"),
    ("What matters most for seeing dim galaxies through a scope?", "astronomy.html",
     "Telescopes"),
    ("When can I see the most shooting stars in summer?", "astronomy.html", "Meteor showers"),
]


def write_pdf(path: Path, pages: list[str]) -> Path:
    """A real PDF (fpdf2), one section of text per page."""
    from fpdf import FPDF

    pdf = FPDF()
    pdf.set_font("helvetica", size=11)
    for text in pages:
        pdf.add_page()
        pdf.multi_cell(0, 6, text)
    pdf.output(str(path))
    return path


def write_docx(path: Path, sections: dict[str, str]) -> Path:
    """A real DOCX (python-docx) with Heading 1 paragraphs and a table."""
    import docx

    document = docx.Document()
    document.add_heading("Employee handbook", level=0)
    for heading, text in sections.items():
        document.add_heading(heading, level=1)
        document.add_paragraph(text)
        if heading == "Expenses":
            table = document.add_table(rows=2, cols=2)
            for r, (city, rate) in enumerate([("Paris", "160 euros"), ("Oslo", "190 euros")]):
                table.cell(r, 0).text, table.cell(r, 1).text = f"Hotel cap {city}", rate
    document.save(str(path))
    return path


def write_markdown(path: Path, sections: dict[str, str]) -> Path:
    body = "\n\n".join(f"## {h}\n\n{t}" for h, t in sections.items())
    path.write_text(f"# Garden guide\n\n{body}\n\n```\nnot a heading: # x\n```\n")
    return path


def write_html(path: Path, sections: dict[str, str]) -> Path:
    body = "".join(f"<h2>{h}</h2><p>{t}</p>" for h, t in sections.items())
    path.write_text(f"<html><head><title>Sky</title><style>p{{color:red}}</style>"
                    f"<script>var hidden = 'never indexed';</script></head><body>"
                    f"<h1>Astronomy notes</h1>{body}</body></html>")
    return path


def write_corpus(directory: Path) -> list[Path]:
    """The four documents, in ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    return [write_pdf(directory / "pump-manual.pdf", PUMP_PDF),
            write_docx(directory / "employee-handbook.docx", HANDBOOK_DOCX),
            write_markdown(directory / "garden-guide.md", GARDEN_MD),
            write_html(directory / "astronomy.html", ASTRONOMY_HTML)]


def is_hit(source: object, document: str, location: object) -> bool:
    """Whether a retrieved source is the labelled section."""
    if source.document != document:
        return False
    return source.page == location if isinstance(location, int) else source.heading == location
