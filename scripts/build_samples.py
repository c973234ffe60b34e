#!/usr/bin/env python3
"""Generate the binary documents (PDF and DOCX) of the Groundwork sample corpus.

The sample corpus is a fictional employee handbook for the made-up company
"Lumen Forge Ltd." and lives in ``groundwork/samples/handbook/``. The Markdown,
HTML and plain-text documents are committed as-is; this script holds the text of
the PDF and DOCX documents and renders them with real libraries so that they have
a genuine text layer (PDF) and genuine heading styles (DOCX).

It also (re)creates ``groundwork/samples/broken/corrupt.pdf``, a deliberately
malformed PDF used to test error handling during ingestion.

Usage (from the repository root)::

    pip install fpdf2 python-docx
    python scripts/build_samples.py

Output is deterministic: creation dates are pinned so re-running the script does
not produce spurious diffs for unchanged content.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import io
import zipfile
from pathlib import Path

Block = str | list  # a paragraph, or a list of bullet-point strings
Section = tuple  # (heading, [Block, ...])

REPO_ROOT = Path(__file__).resolve().parent.parent
SAMPLES_DIR = REPO_ROOT / "groundwork" / "samples"
HANDBOOK_DIR = SAMPLES_DIR / "handbook"
BROKEN_DIR = SAMPLES_DIR / "broken"

AUTHOR = "Lumen Forge Ltd. (fictional)"
FIXED_DATE = _dt.datetime(2025, 1, 6, 9, 0, 0, tzinfo=_dt.UTC)

# ---------------------------------------------------------------------------
# Document texts. PDF texts must only use latin-1 characters (core PDF fonts).
# ---------------------------------------------------------------------------

PDF_DOCUMENTS: list[dict] = [
    {
        "file": "compensation-and-payroll.pdf",
        "title": "Compensation and Payroll",
        "intro": (
            "This document explains when and how employees of Lumen Forge Ltd. are paid, "
            "how salaries are reviewed, and which extra payments are available. Questions "
            "about your pay should be sent to payroll@lumenforge.example."
        ),
        "sections": [
            (
                "Pay Day",
                [
                    "Salaries are paid monthly on the 25th of each month by bank transfer. If the "
                    "25th falls on a weekend or a bank holiday, you are paid on the previous "
                    "working day.",
                    "Your payslip is published in Harbour two working days before pay day. Please "
                    "check it and tell the Payroll team about any mistakes straight away.",
                ],
            ),
            (
                "Payroll Deadlines",
                [
                    "Any change that affects your pay, such as new bank details, a change of address "
                    "or on-call claims, must reach the Payroll team by the 12th of the month to be "
                    "included in that month's salary. Changes received later are processed in the "
                    "following month.",
                ],
            ),
            (
                "Salary Reviews",
                [
                    "Salaries are reviewed once a year, and any increase takes effect on 1 July. "
                    "Increases take into account your annual review rating, your position in the "
                    "salary band for your role, and market data. Salary letters are sent to "
                    "everyone in June, even when there is no change.",
                ],
            ),
            (
                "Bonus and Allowances",
                [
                    [
                        "Company bonus: up to 9% of base salary, depending on company results and "
                        "your individual rating. The bonus is paid in the March payroll.",
                        "On-call allowance: £250 for each full week you are on the on-call rota.",
                        "Salary advance: in an emergency you can request an interest-free advance "
                        "of up to £1,500, repaid from your salary over up to twelve months.",
                    ]
                ],
            ),
        ],
    },
    {
        "file": "benefits-health-and-pension.pdf",
        "title": "Benefits: Health and Pension",
        "intro": (
            "Lumen Forge Ltd. offers a range of benefits to help employees stay healthy and plan "
            "for the future. All benefits below start on your first day unless stated otherwise, "
            "and you can manage them in the Benefits section of Harbour."
        ),
        "sections": [
            (
                "Private Medical Insurance",
                [
                    "Every employee is covered by private medical insurance from Aldercare Health. "
                    "You can add your partner and children to the policy at no extra cost. The "
                    "policy has an excess of £100 per person per policy year.",
                ],
            ),
            (
                "Pension",
                [
                    "You are enrolled in the company pension plan, run by Stonebridge Pensions, on "
                    "your first pay day. If you contribute at least 4% of your basic salary, Lumen "
                    "Forge contributes 7%. Contributions are made through salary sacrifice, which "
                    "reduces the tax and National Insurance you pay. You can opt out or change your "
                    "contribution at any time.",
                ],
            ),
            (
                "Life Assurance and Income Protection",
                [
                    "Life assurance pays four times your basic salary to your chosen beneficiaries "
                    "if you die while employed by Lumen Forge. If long-term illness stops you from "
                    "working, income protection pays 75% of your salary after 28 weeks of "
                    "continuous absence.",
                ],
            ),
            (
                "Wellbeing",
                [
                    [
                        "Haven Line, our employee assistance programme, offers free and confidential "
                        "advice 24 hours a day, including up to six counselling sessions per issue.",
                        "A dental and optical cash plan refunds up to £600 per year of dental, "
                        "eye test and glasses costs.",
                        "The cycle-to-work scheme lets you spread the cost of a bike and safety "
                        "equipment over twelve months through salary sacrifice.",
                    ]
                ],
            ),
        ],
    },
    {
        "file": "incident-response.pdf",
        "title": "Incident Response",
        "intro": (
            "This procedure describes how Lumen Forge Ltd. responds to production incidents "
            "affecting Beacon and to security incidents affecting our own systems. Anyone in the "
            "company can and should declare an incident if they think one is happening."
        ),
        "sections": [
            (
                "Severity Levels",
                [
                    [
                        "SEV1: Beacon is unavailable for many customers, or a data breach is confirmed.",
                        "SEV2: a major feature is degraded for many customers, or a breach is suspected.",
                        "SEV3: a minor feature is affected, or a small number of customers are impacted.",
                        "SEV4: no customer impact, but follow-up work is needed.",
                    ]
                ],
            ),
            (
                "Declaring an Incident",
                [
                    "Type /declare in the #incidents channel in Relay. This creates a dedicated "
                    "incident channel and pages the on-call engineer through Klaxon, our paging "
                    "tool. If you are unsure about the severity, choose the higher one; it can "
                    "always be lowered later.",
                ],
            ),
            (
                "Roles and Communication",
                [
                    "For SEV1 and SEV2 incidents an Incident Commander must be assigned within 10 "
                    "minutes of the incident being declared. The Incident Commander coordinates the "
                    "response and appoints a Communications Lead, who updates the public status "
                    "page at least every 45 minutes during a SEV1 until it is resolved.",
                ],
            ),
            (
                "Personal Data Breaches",
                [
                    "If an incident may involve personal data, notify the Data Protection Officer "
                    "immediately. Where the law requires it, the Data Protection Officer will "
                    "report the breach to the Information Commissioner's Office within 72 hours "
                    "of us becoming aware of it.",
                ],
            ),
            (
                "After the Incident",
                [
                    "Every SEV1 and SEV2 incident needs a blameless postmortem, published within "
                    "5 working days of resolution. The postmortem explains what happened, why, and "
                    "which follow-up actions will stop it happening again. Each action has a named "
                    "owner and a due date.",
                ],
            ),
        ],
    },
    {
        "file": "data-retention-and-privacy.pdf",
        "title": "Data Retention and Privacy",
        "intro": (
            "Lumen Forge Ltd. handles personal data about employees, candidates and customers. "
            "This policy explains how we classify information, how long we keep it and how we "
            "respond to privacy requests."
        ),
        "sections": [
            (
                "Data Protection Officer",
                [
                    "Our Data Protection Officer (DPO) is Tomas Okafor. Contact him at "
                    "dpo@lumenforge.example with any privacy question, or before starting a new "
                    "project that uses personal data in a new way.",
                ],
            ),
            (
                "Data Classification",
                [
                    "All company information falls into one of four classes: Public, Internal, "
                    "Confidential or Restricted. Customer data and employee health information "
                    "are always Restricted. If you are unsure, treat information as Confidential.",
                ],
            ),
            (
                "Retention Periods",
                [
                    [
                        "Financial and accounting records: 7 years after the end of the financial year.",
                        "Personnel files: six years after employment ends.",
                        "CVs and interview notes of unsuccessful candidates: 9 months.",
                        "Application and server logs: 90 days.",
                        "Beacon customer metadata: deleted 35 days after a contract ends.",
                        "CCTV footage from our offices: 31 days.",
                    ]
                ],
            ),
            (
                "Privacy Requests",
                [
                    "If anyone asks to see, correct or delete their personal data (a subject "
                    "access request), forward it to the DPO within 2 working days. We must respond "
                    "within one calendar month. Do not try to answer the request yourself.",
                ],
            ),
            (
                "Secure Disposal",
                [
                    "Paper documents containing Confidential or Restricted information must go in "
                    "the locked shredding bins in each office. Old devices are returned to IT for "
                    "certified data wiping; never throw them away or sell them.",
                ],
            ),
        ],
    },
]

DOCX_DOCUMENTS: list[dict] = [
    {
        "file": "procurement-and-vendor-approval.docx",
        "title": "Procurement and Vendor Approval",
        "intro": (
            "This policy explains how Lumen Forge Ltd. buys goods and services, who can approve "
            "purchases, and how new suppliers are checked before we work with them. All purchase "
            "requests are raised in Requisite, our procurement portal."
        ),
        "sections": [
            (
                "Approval Thresholds",
                [
                    [
                        "Under £1,000: approval from your line manager is enough.",
                        "£1,000 to £24,999: approval from the budget holder and from Finance.",
                        "£25,000 and above: at least three competing quotes and approval from our "
                        "Chief Financial Officer, Rebecca Marlowe.",
                    ],
                    "Splitting a purchase into smaller orders to avoid a threshold is a breach of "
                    "this policy.",
                ],
            ),
            (
                "Onboarding a New Vendor",
                [
                    "Before a new supplier can be paid, it must be set up in Requisite with a "
                    "completed vendor form. Finance verifies the supplier's bank details with a "
                    "phone call to a known contact.",
                    "Any vendor that will process personal data or connect to our systems also "
                    "needs a security and privacy review. Allow about three weeks for this "
                    "review.",
                ],
            ),
            (
                "Contracts and Payment",
                [
                    "Only the CFO and the CEO may sign supplier contracts; nobody else may sign on "
                    "behalf of the company. Our standard payment terms are 30 days from the date "
                    "of a valid invoice. Budget holders are reminded of contracts that renew "
                    "automatically at least three months before the renewal date.",
                ],
            ),
            (
                "Preferred Suppliers",
                [
                    "Finance keeps a list of preferred suppliers for laptops, office supplies, "
                    "catering and recruitment. Use a preferred supplier whenever one is available, "
                    "because prices and terms have already been negotiated.",
                ],
            ),
        ],
    },
    {
        "file": "learning-and-development-budget.docx",
        "title": "Learning and Development Budget",
        "intro": (
            "Lumen Forge Ltd. wants everyone to keep growing. Every employee has a personal "
            "learning budget and dedicated time for learning. Requests are made in Harbour "
            "Learning."
        ),
        "sections": [
            (
                "Your Budget",
                [
                    "Each employee has a learning budget of £1,200 per financial year, which runs "
                    "from April to March. New starters receive a pro-rata budget. Unused budget "
                    "does not roll over to the next year.",
                ],
            ),
            (
                "Learning Days",
                [
                    "In addition to the budget, you get 4 learning days per year to attend courses, "
                    "conferences or to study. Agree the dates with your manager in advance.",
                ],
            ),
            (
                "What the Budget Covers",
                [
                    [
                        "Online and in-person courses",
                        "Conference tickets, including related travel",
                        "Books and subscriptions to learning platforms",
                        "Professional certification exams",
                    ],
                    "University degrees are not covered by the personal budget. They are handled "
                    "through a separate sponsorship scheme with its own application round.",
                ],
            ),
            (
                "Repayment",
                [
                    "If a single course or certification costs more than £3,000 and you leave Lumen "
                    "Forge within 12 months of completing it, you will be asked to repay a share of "
                    "the cost, reduced for each full month you stayed.",
                ],
            ),
            (
                "Forge Academy",
                [
                    "Forge Academy is our programme of internal talks and workshops. Sessions run "
                    "every Friday at 13:00 in Bristol and are streamed to the other offices. "
                    "Anyone can volunteer to give a talk.",
                ],
            ),
        ],
    },
    {
        "file": "whistleblowing.docx",
        "title": "Whistleblowing Policy",
        "intro": (
            "Lumen Forge Ltd. is committed to high standards of honesty and integrity. This policy "
            "explains how to report serious wrongdoing safely and confidentially, and how you are "
            "protected when you do so."
        ),
        "sections": [
            (
                "What You Can Report",
                [
                    "You should report any genuine concern about fraud, bribery, danger to health "
                    "and safety, misuse of customer data, breaking the law, or attempts to cover up "
                    "any of these. Personal grievances about your own employment are handled "
                    "through the grievance process instead.",
                ],
            ),
            (
                "How to Report",
                [
                    [
                        "Through ClearVoice, an independent hotline run by an external provider. "
                        "You can report by phone or online, and you can stay anonymous. Quote the "
                        "company reference LF-2291.",
                        "Directly to Margaret Ellery, the non-executive director who chairs our "
                        "Audit Committee.",
                        "To the Chief People Officer, if you are comfortable doing so.",
                    ],
                ],
            ),
            (
                "What Happens Next",
                [
                    "We acknowledge every report within 48 hours. A trained investigator who is "
                    "independent of the area concerned looks into it, and we aim to complete "
                    "investigations within 3 months. Where possible, we will tell you the outcome.",
                ],
            ),
            (
                "Protection from Retaliation",
                [
                    "Nobody will be dismissed, disciplined or treated unfairly for raising a "
                    "genuine concern, even if it turns out to be mistaken. Retaliating against a "
                    "whistleblower is treated as gross misconduct.",
                ],
            ),
        ],
    },
]


# ---------------------------------------------------------------------------
# Renderers
# ---------------------------------------------------------------------------


def _pdf_text(text: str) -> str:
    """Check that text can be rendered with the PDF core fonts (latin-1)."""
    text.encode("latin-1")  # raises UnicodeEncodeError on unsupported characters
    return text


def build_pdf(doc: dict, out_dir: Path) -> Path:
    from fpdf import FPDF

    pdf = FPDF(format="A4")
    pdf.set_title(doc["title"])
    pdf.set_author(AUTHOR)
    pdf.set_creator("scripts/build_samples.py")
    pdf.set_creation_date(FIXED_DATE)
    pdf.set_margins(20, 20, 20)
    pdf.set_auto_page_break(auto=True, margin=20)
    pdf.add_page()

    # Title: first line, large and bold.
    pdf.set_font("Helvetica", "B", 20)
    pdf.multi_cell(0, 10, _pdf_text(doc["title"]), new_x="LMARGIN", new_y="NEXT")
    pdf.ln(2)
    pdf.set_font("Helvetica", "", 11)
    pdf.multi_cell(0, 6, _pdf_text(doc["intro"]), new_x="LMARGIN", new_y="NEXT")

    for heading, blocks in doc["sections"]:
        pdf.ln(4)
        pdf.set_font("Helvetica", "B", 14)
        pdf.multi_cell(0, 8, _pdf_text(heading), new_x="LMARGIN", new_y="NEXT")
        pdf.ln(1)
        pdf.set_font("Helvetica", "", 11)
        for block in blocks:
            if isinstance(block, list):
                for item in block:
                    pdf.multi_cell(0, 6, _pdf_text("- " + item), new_x="LMARGIN", new_y="NEXT")
            else:
                pdf.multi_cell(0, 6, _pdf_text(block), new_x="LMARGIN", new_y="NEXT")
            pdf.ln(2)

    path = out_dir / doc["file"]
    pdf.output(str(path))
    return path


def build_docx(doc: dict, out_dir: Path) -> Path:
    import docx

    document = docx.Document()
    props = document.core_properties
    props.title = doc["title"]
    props.author = AUTHOR
    props.created = FIXED_DATE.replace(tzinfo=None)
    props.modified = FIXED_DATE.replace(tzinfo=None)
    props.last_modified_by = AUTHOR
    props.revision = 1

    document.add_heading(doc["title"], level=1)  # "Heading 1" style
    document.add_paragraph(doc["intro"])
    for heading, blocks in doc["sections"]:
        document.add_heading(heading, level=2)  # "Heading 2" style
        for block in blocks:
            if isinstance(block, list):
                for item in block:
                    document.add_paragraph(item, style="List Bullet")
            else:
                document.add_paragraph(block)

    path = out_dir / doc["file"]
    buffer = io.BytesIO()
    document.save(buffer)
    path.write_bytes(_normalise_zip(buffer.getvalue()))
    return path


def _normalise_zip(data: bytes) -> bytes:
    """Rewrite a DOCX (zip) archive with fixed entry timestamps for reproducible output."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as src, zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            fixed = zipfile.ZipInfo(info.filename, date_time=FIXED_DATE.timetuple()[:6])
            fixed.compress_type = zipfile.ZIP_DEFLATED
            fixed.external_attr = info.external_attr
            dst.writestr(fixed, src.read(info.filename))
    return out.getvalue()


def build_corrupt_pdf(out_dir: Path) -> Path:
    """A file that claims to be a PDF but is garbage after the header."""
    path = out_dir / "corrupt.pdf"
    garbage = bytes((i * 37 + 11) % 256 for i in range(512))
    path.write_bytes(b"%PDF-1.4\n" + b"\x00\xff\xfe this is not a real pdf body \n" + garbage)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HANDBOOK_DIR, help="handbook output directory")
    parser.add_argument("--broken", type=Path, default=BROKEN_DIR, help="broken-files output directory")
    args = parser.parse_args()

    args.out.mkdir(parents=True, exist_ok=True)
    args.broken.mkdir(parents=True, exist_ok=True)

    for doc in PDF_DOCUMENTS:
        print("wrote", build_pdf(doc, args.out))
    for doc in DOCX_DOCUMENTS:
        print("wrote", build_docx(doc, args.out))
    print("wrote", build_corrupt_pdf(args.broken))


if __name__ == "__main__":
    main()
