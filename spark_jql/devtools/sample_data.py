"""A small multilingual sample corpus, written for this project, for demos and tests.

The sentences below were written for spark_jql (no third-party text). Documents
are random concatenations with a long-tailed length distribution and FineWeb2's
column layout (``id, text, url, language, language_script``), so the pipeline
sees realistic shapes. The content says nothing about educational quality.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

SENTENCES: dict[tuple[str, str], list[str]] = {
    ("eng", "Latn"): [
        "Photosynthesis turns light, water and carbon dioxide into sugar and oxygen.",
        "Click here to win a free phone, limited offer, only today!",
        "The French Revolution began in 1789 and reshaped European politics.",
        "A prime number has exactly two divisors: one and itself.",
        "Our shop is open from nine to five, Monday to Saturday.",
        "Water boils at a lower temperature on a high mountain because the air pressure is lower.",
    ],
    ("deu", "Latn"): [
        "Die Photosynthese wandelt Licht, Wasser und Kohlendioxid in Zucker und Sauerstoff um.",
        "Jetzt klicken und ein kostenloses Handy gewinnen, nur heute!",
        "Die Französische Revolution begann 1789 und veränderte die Politik Europas.",
        "Eine Primzahl hat genau zwei Teiler: eins und sich selbst.",
        "Unser Laden ist montags bis samstags von neun bis fünf Uhr geöffnet.",
        "Auf einem hohen Berg siedet Wasser früher, weil der Luftdruck geringer ist.",
    ],
    ("spa", "Latn"): [
        "La fotosíntesis transforma la luz, el agua y el dióxido de carbono en azúcar y oxígeno.",
        "¡Haz clic aquí y gana un teléfono gratis, solo hoy!",
        "La Revolución francesa comenzó en 1789 y transformó la política europea.",
        "Un número primo tiene exactamente dos divisores: el uno y él mismo.",
        "Nuestra tienda abre de nueve a cinco, de lunes a sábado.",
        "En una montaña alta el agua hierve antes porque la presión del aire es menor.",
    ],
    ("fra", "Latn"): [
        "La photosynthèse transforme la lumière, l'eau et le dioxyde de carbone en sucre et en oxygène.",
        "Cliquez ici pour gagner un téléphone gratuit, aujourd'hui seulement !",
        "La Révolution française a commencé en 1789 et a transformé la politique européenne.",
        "Un nombre premier a exactement deux diviseurs : un et lui-même.",
        "Notre boutique est ouverte de neuf heures à dix-sept heures, du lundi au samedi.",
    ],
    ("rus", "Cyrl"): [
        "Фотосинтез превращает свет, воду и углекислый газ в сахар и кислород.",
        "Нажмите здесь и выиграйте бесплатный телефон, только сегодня!",
        "Французская революция началась в 1789 году и изменила европейскую политику.",
        "Простое число имеет ровно два делителя: единицу и само себя.",
        "Наш магазин открыт с девяти до пяти, с понедельника по субботу.",
    ],
    ("ell", "Grek"): [
        "Η φωτοσύνθεση μετατρέπει το φως, το νερό και το διοξείδιο του άνθρακα σε σάκχαρα και οξυγόνο.",
        "Κάντε κλικ εδώ και κερδίστε δωρεάν τηλέφωνο, μόνο σήμερα!",
        "Η Γαλλική Επανάσταση ξεκίνησε το 1789 και άλλαξε την ευρωπαϊκή πολιτική.",
        "Ένας πρώτος αριθμός έχει ακριβώς δύο διαιρέτες: το ένα και τον εαυτό του.",
    ],
    ("arb", "Arab"): [
        "يحول التمثيل الضوئي الضوء والماء وثاني أكسيد الكربون إلى سكر وأكسجين.",
        "انقر هنا واربح هاتفا مجانيا، اليوم فقط!",
        "بدأت الثورة الفرنسية عام 1789 وغيرت السياسة الأوروبية.",
        "العدد الأولي له قاسمان فقط: الواحد والعدد نفسه.",
    ],
    ("cmn", "Hani"): [
        "光合作用把光、水和二氧化碳转化为糖和氧气。",
        "点击这里，免费赢取手机，仅限今天！",
        "法国大革命始于1789年，改变了欧洲政治。",
        "质数恰好有两个因数：一和它本身。",
        "我们的商店周一至周六从九点营业到五点。",
    ],
}

LANGUAGE_WEIGHTS = {"eng": 6, "deu": 4, "spa": 4, "fra": 3, "rus": 2, "ell": 1, "arb": 1, "cmn": 2}


def all_sentences() -> list[str]:
    return [s for group in SENTENCES.values() for s in group]


def generate_documents(n: int, seed: int = 0, mean_sentences: float = 6.0) -> list[dict]:
    """``n`` FineWeb2-shaped records; lengths lognormal (a few very long)."""
    rng = random.Random(seed)
    keys = list(SENTENCES)
    weights = [LANGUAGE_WEIGHTS[lang] for lang, _ in keys]
    docs = []
    for i in range(n):
        lang, script = rng.choices(keys, weights)[0]
        count = max(1, min(400, int(rng.lognormvariate(0, 1.0) * mean_sentences)))
        text = " ".join(rng.choice(SENTENCES[(lang, script)]) for _ in range(count))
        docs.append(
            {
                "id": f"sample-{seed}-{i:06d}",
                "text": text,
                "url": f"https://example.org/{lang}/{i}",
                "language": lang,
                "language_script": script,
            }
        )
    return docs


def write_jsonl(docs: list[dict], path: str | Path, files: int = 1) -> list[Path]:
    """Write ``docs`` split round-robin over ``files`` JSON-lines files (a directory if files > 1)."""
    path = Path(path)
    if files == 1:
        targets = [path]
        path.parent.mkdir(parents=True, exist_ok=True)
    else:
        path.mkdir(parents=True, exist_ok=True)
        targets = [path / f"part-{k:04d}.jsonl" for k in range(files)]
    handles = [t.open("w", encoding="utf-8") for t in targets]
    try:
        for i, doc in enumerate(docs):
            handles[i % files].write(json.dumps(doc, ensure_ascii=False) + "\n")
    finally:
        for h in handles:
            h.close()
    return targets
