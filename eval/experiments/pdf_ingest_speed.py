"""Pages/s of PDF ingest on a generated 50-page PDF: load only, and load + chunk + embed."""
import tempfile
import statistics, sys, time
from pathlib import Path
from fpdf import FPDF
from rag import Config
from rag.chunking import Chunker
from rag.documents import load_document
from rag.embedding import Embedder
from rag.index import Index

PAGES = 50
words = Path("seeds/compound-abuses-myanmar-border-areas-2023.txt").read_text(encoding="utf-8").split()
pdf = FPDF()
pdf.set_title("Bench report")
pos, section = 0, 0
for page in range(PAGES):
    pdf.add_page()
    if page % 5 == 0:
        section += 1
        pdf.set_font("Helvetica", "B", 16)
        pdf.start_section(f"{section} Section {section}")
        pdf.cell(0, 10, f"{section} Section {section}", new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("Helvetica", "", 11)
    for _ in range(4):  # four paragraphs of ~110 words: a full page of 11 pt text
        chunk = " ".join(words[pos:pos + 110]).encode("latin-1", "replace").decode("latin-1")
        pos = (pos + 110) % (len(words) - 120)
        pdf.multi_cell(0, 5.5, chunk, new_x="LMARGIN", new_y="NEXT")
        pdf.ln(3)
out = Path(tempfile.gettempdir()) / "bench-50.pdf"
pdf.output(str(out))
config = Config()
embedder = Embedder(config.model_name, config.embed_dtype, config.embed_batch_size)
embedder.encode(["warm up"])
load_times, build_times = [], []
for _ in range(3):
    t = time.perf_counter(); doc = load_document(out, doc_id="bench"); load_times.append(time.perf_counter() - t)
    t = time.perf_counter(); doc = load_document(out, doc_id="bench"); index, n = Index.build([doc], config, embedder)
    build_times.append(time.perf_counter() - t)
print(f"{len(doc.pages)} pages, {len(doc.text)} chars, {len(index.chunks)} chunks, {len(doc.sections)} sections")
lo, bu = statistics.median(load_times), statistics.median(build_times)
print(f"load only:            {lo:.2f} s  = {PAGES / lo:.0f} pages/s")
print(f"load + chunk + embed: {bu:.2f} s  = {PAGES / bu:.1f} pages/s ({len(index.chunks) / (bu - lo):.1f} chunks/s embedded)")
