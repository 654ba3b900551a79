"""A small multilingual sample corpus with known educational value, written for this project.

The sentences below were written for spark_jql (no third-party text), in eight
languages and three kinds: ``educational`` (explains a fact of science, history or
mathematics; value 5), ``everyday`` (opening hours, weather, personal notes; value 2)
and ``spam`` (clickbait, cookie banners, boilerplate; value 0). A document is a
random mixture of one language's sentences with a long-tailed length distribution
and FineWeb2's column layout (``id, text, url, language, language_script``), so the
pipeline sees realistic shapes.

With ``labels=True`` each document also carries what the demo knows about it:
``edu_value`` (the mean value of its sentences, 0-5, the "human" ground truth) and
``judge_a`` / ``judge_b`` / ``judge_c`` (integer 0-5 ratings = ground truth plus
independent noise, standing in for JQL's LLM judges, which disagree with each other
and with people). A toy: real documents are not sentence mixtures, so the numbers
it gives show the pipeline working, not JQL's quality on real text.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

KIND_VALUES = {"educational": 5.0, "everyday": 2.0, "spam": 0.0}

CORPUS: dict[tuple[str, str], dict[str, list[str]]] = {
    ("eng", "Latn"): {
        "educational": [
            "Photosynthesis turns light, water and carbon dioxide into sugar and oxygen.",
            "The French Revolution began in 1789 and reshaped European politics.",
            "A prime number has exactly two divisors: one and itself.",
            "Water boils at a lower temperature on a high mountain because the air pressure is lower.",
            "The heart pumps blood through the arteries, and the veins carry it back.",
            "To find the area of a triangle, multiply its base by its height and divide by two.",
        ],
        "everyday": [
            "Our shop is open from nine to five, Monday to Saturday.",
            "It rained all weekend, so we stayed at home and watched films.",
            "The bus to the station leaves every twenty minutes.",
            "My sister bought a new blue bicycle yesterday.",
        ],
        "spam": [
            "Click here to win a free phone, limited offer, only today!",
            "This website uses cookies. Accept all cookies to continue.",
            "Buy cheap watches now!!! Best price guaranteed!!!",
            "Share this post and follow us for more amazing deals.",
        ],
    },
    ("deu", "Latn"): {
        "educational": [
            "Die Photosynthese wandelt Licht, Wasser und Kohlendioxid in Zucker und Sauerstoff um.",
            "Die Französische Revolution begann 1789 und veränderte die Politik Europas.",
            "Eine Primzahl hat genau zwei Teiler: eins und sich selbst.",
            "Auf einem hohen Berg siedet Wasser früher, weil der Luftdruck geringer ist.",
            "Das Herz pumpt das Blut durch die Arterien, und die Venen führen es zurück.",
            "Die Fläche eines Dreiecks ist Grundseite mal Höhe geteilt durch zwei.",
        ],
        "everyday": [
            "Unser Laden ist montags bis samstags von neun bis fünf Uhr geöffnet.",
            "Am Wochenende hat es geregnet, also sind wir zu Hause geblieben.",
            "Der Bus zum Bahnhof fährt alle zwanzig Minuten.",
            "Meine Schwester hat sich gestern ein neues blaues Fahrrad gekauft.",
        ],
        "spam": [
            "Jetzt klicken und ein kostenloses Handy gewinnen, nur heute!",
            "Diese Website verwendet Cookies. Alle Cookies akzeptieren, um fortzufahren.",
            "Billige Uhren jetzt kaufen!!! Bester Preis garantiert!!!",
            "Teile diesen Beitrag und folge uns für weitere tolle Angebote.",
        ],
    },
    ("spa", "Latn"): {
        "educational": [
            "La fotosíntesis transforma la luz, el agua y el dióxido de carbono en azúcar y oxígeno.",
            "La Revolución francesa comenzó en 1789 y transformó la política europea.",
            "Un número primo tiene exactamente dos divisores: el uno y él mismo.",
            "En una montaña alta el agua hierve antes porque la presión del aire es menor.",
            "El corazón bombea la sangre por las arterias y las venas la devuelven.",
            "El área de un triángulo es la base por la altura dividida entre dos.",
        ],
        "everyday": [
            "Nuestra tienda abre de nueve a cinco, de lunes a sábado.",
            "Llovió todo el fin de semana, así que nos quedamos en casa viendo películas.",
            "El autobús a la estación sale cada veinte minutos.",
            "Mi hermana se compró ayer una bicicleta azul nueva.",
        ],
        "spam": [
            "¡Haz clic aquí y gana un teléfono gratis, solo hoy!",
            "Este sitio web utiliza cookies. Acepta todas las cookies para continuar.",
            "¡¡¡Compra relojes baratos ahora!!! ¡¡¡Mejor precio garantizado!!!",
            "Comparte esta publicación y síguenos para más ofertas increíbles.",
        ],
    },
    ("fra", "Latn"): {
        "educational": [
            "La photosynthèse transforme la lumière, l'eau et le dioxyde de carbone en sucre et en oxygène.",
            "La Révolution française a commencé en 1789 et a transformé la politique européenne.",
            "Un nombre premier a exactement deux diviseurs : un et lui-même.",
            "Le cœur pompe le sang dans les artères, et les veines le ramènent.",
            "L'aire d'un triangle est égale à la base multipliée par la hauteur, divisée par deux.",
        ],
        "everyday": [
            "Notre boutique est ouverte de neuf heures à dix-sept heures, du lundi au samedi.",
            "Il a plu tout le week-end, alors nous sommes restés à la maison.",
            "Le bus pour la gare part toutes les vingt minutes.",
        ],
        "spam": [
            "Cliquez ici pour gagner un téléphone gratuit, aujourd'hui seulement !",
            "Ce site utilise des cookies. Acceptez tous les cookies pour continuer.",
            "Achetez des montres pas chères maintenant !!! Meilleur prix garanti !!!",
        ],
    },
    ("rus", "Cyrl"): {
        "educational": [
            "Фотосинтез превращает свет, воду и углекислый газ в сахар и кислород.",
            "Французская революция началась в 1789 году и изменила европейскую политику.",
            "Простое число имеет ровно два делителя: единицу и само себя.",
            "Сердце перекачивает кровь по артериям, а вены возвращают её обратно.",
        ],
        "everyday": [
            "Наш магазин открыт с девяти до пяти, с понедельника по субботу.",
            "Все выходные шёл дождь, поэтому мы остались дома.",
            "Автобус до вокзала ходит каждые двадцать минут.",
        ],
        "spam": [
            "Нажмите здесь и выиграйте бесплатный телефон, только сегодня!",
            "Этот сайт использует файлы cookie. Примите все cookie, чтобы продолжить.",
            "Купите дешёвые часы сейчас!!! Лучшая цена гарантирована!!!",
        ],
    },
    ("ell", "Grek"): {
        "educational": [
            "Η φωτοσύνθεση μετατρέπει το φως, το νερό και το διοξείδιο του άνθρακα σε σάκχαρα και οξυγόνο.",
            "Η Γαλλική Επανάσταση ξεκίνησε το 1789 και άλλαξε την ευρωπαϊκή πολιτική.",
            "Ένας πρώτος αριθμός έχει ακριβώς δύο διαιρέτες: το ένα και τον εαυτό του.",
        ],
        "everyday": [
            "Το κατάστημά μας είναι ανοιχτό από τις εννέα έως τις πέντε.",
            "Έβρεχε όλο το Σαββατοκύριακο και μείναμε στο σπίτι.",
        ],
        "spam": [
            "Κάντε κλικ εδώ και κερδίστε δωρεάν τηλέφωνο, μόνο σήμερα!",
            "Αυτός ο ιστότοπος χρησιμοποιεί cookies. Αποδεχτείτε όλα τα cookies.",
        ],
    },
    ("arb", "Arab"): {
        "educational": [
            "يحول التمثيل الضوئي الضوء والماء وثاني أكسيد الكربون إلى سكر وأكسجين.",
            "بدأت الثورة الفرنسية عام 1789 وغيرت السياسة الأوروبية.",
            "العدد الأولي له قاسمان فقط: الواحد والعدد نفسه.",
        ],
        "everyday": [
            "متجرنا مفتوح من التاسعة إلى الخامسة من الاثنين إلى السبت.",
            "أمطرت طوال عطلة نهاية الأسبوع فبقينا في البيت.",
        ],
        "spam": [
            "انقر هنا واربح هاتفا مجانيا، اليوم فقط!",
            "يستخدم هذا الموقع ملفات تعريف الارتباط. اقبل الكل للمتابعة.",
        ],
    },
    ("cmn", "Hani"): {
        "educational": [
            "光合作用把光、水和二氧化碳转化为糖和氧气。",
            "法国大革命始于1789年，改变了欧洲政治。",
            "质数恰好有两个因数：一和它本身。",
            "心脏把血液泵入动脉，静脉再把血液送回心脏。",
        ],
        "everyday": [
            "我们的商店周一至周六从九点营业到五点。",
            "周末一直下雨，所以我们待在家里看电影。",
            "去火车站的公交车每二十分钟一班。",
        ],
        "spam": [
            "点击这里，免费赢取手机，仅限今天！",
            "本网站使用Cookie。接受所有Cookie以继续。",
            "马上购买便宜手表！！！保证最低价！！！",
        ],
    },
}

# Every sentence of a language, in one list (what tokenizers and scorer tests use).
SENTENCES: dict[tuple[str, str], list[str]] = {
    key: [s for kind in KIND_VALUES for s in kinds[kind]] for key, kinds in CORPUS.items()
}

LANGUAGE_WEIGHTS = {"eng": 6, "deu": 4, "spa": 4, "fra": 3, "rus": 2, "ell": 1, "arb": 1, "cmn": 2}
JUDGES = {"judge_a": 0.6, "judge_b": 0.8, "judge_c": 1.0}  # label column -> noise (std, in label points)
TRUTH = "edu_value"


def all_sentences() -> list[str]:
    return [s for group in SENTENCES.values() for s in group]


def generate_documents(n: int, seed: int = 0, mean_sentences: float = 6.0, labels: bool = False) -> list[dict]:
    """``n`` FineWeb2-shaped records; lengths lognormal (a few very long); ``labels`` adds the known values.

    Each document draws its own mixture of kinds (share of educational sentences
    uniform in [0, 1], the rest split at random between everyday and spam), so its
    educational value spreads over the whole 0-5 range.
    """
    rng = random.Random(seed)
    keys = list(CORPUS)
    weights = [LANGUAGE_WEIGHTS[lang] for lang, _ in keys]
    kinds = list(KIND_VALUES)
    docs = []
    for i in range(n):
        lang, script = rng.choices(keys, weights)[0]
        count = max(1, min(400, int(rng.lognormvariate(0, 1.0) * mean_sentences)))
        edu = rng.random()
        spam = rng.random() * (1 - edu)
        picked = rng.choices(kinds, [edu, 1 - edu - spam, spam], k=count)
        text = " ".join(rng.choice(CORPUS[(lang, script)][kind]) for kind in picked)
        doc = {
            "id": f"sample-{seed}-{i:06d}",
            "text": text,
            "url": f"https://example.org/{lang}/{i}",
            "language": lang,
            "language_script": script,
        }
        if labels:
            value = sum(KIND_VALUES[k] for k in picked) / count
            doc[TRUTH] = round(value, 3)
            for judge, noise in JUDGES.items():
                doc[judge] = int(min(5, max(0, round(value + rng.gauss(0, noise)))))
        docs.append(doc)
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
