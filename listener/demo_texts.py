"""Hand-written post templates for the demo source, in English, Turkish and Hungarian.

``{b}`` is replaced by a brand name or handle. Every text is fictional.
"""

from __future__ import annotations

POSITIVE = {
    "en": [
        "Got my parcel from {b} a day early, great job!",
        "Honestly {b} has the friendliest couriers in town. Love it.",
        "{b} support fixed my address problem in five minutes. Impressed.",
        "Ordered at midnight, {b} delivered by noon. Amazing service.",
        "Shout out to the {b} driver who waited while I ran downstairs, thank you!",
    ],
    "tr": [
        "{b} siparişim bir gün erken geldi, çok memnun kaldım!",
        "{b} kuryesi çok kibardı, teşekkürler 🙏",
        "{b} müşteri hizmetleri sorunumu hemen çözdü, harikasınız.",
        "Bu hafta {b} ile üç paket aldım, hepsi zamanında geldi. Süper!",
    ],
    "hu": [
        "A {b} egy nappal korábban hozta a csomagot, nagyon elégedett vagyok!",
        "Köszönöm a {b} futárának, nagyon kedves volt.",
        "A {b} ügyfélszolgálata pár perc alatt megoldotta a gondomat. Szuper!",
        "Gyors és pontos volt a {b} szállítás, csak ajánlani tudom.",
    ],
}

NEUTRAL = {
    "en": [
        "Does {b} deliver on Sundays? Trying to plan a return.",
        "{b} just changed their delivery slots to 2-hour windows.",
        "Anyone know if {b} ships to Northern Ireland?",
        "Comparing {b} prices for a 5 kg box this week.",
        "{b} announced a new pickup point near the station.",
    ],
    "tr": [
        "{b} pazar günleri dağıtım yapıyor mu?",
        "{b} yeni teslimat noktası açmış, Kadıköy'de.",
        "{b} ile yurt dışına gönderim ne kadar sürüyor?",
        "Bugün {b} üzerinden iade başlattım, bakalım.",
    ],
    "hu": [
        "A {b} vasárnap is szállít?",
        "A {b} új csomagpontot nyitott a Nyugatinál.",
        "Mennyi idő alatt ér ki a {b} csomag Debrecenbe?",
        "Ma adtam fel egy csomagot a {b} automatájában.",
    ],
}

NEGATIVE = {
    "en": [
        "{b} lost my parcel AGAIN. Third time this month. Useless.",
        "Waited all day for {b}, they marked it 'recipient absent'. I was home!!",
        "{b} customer service hung up on me twice. Terrible.",
        "My {b} package arrived crushed and soaked. Never again.",
        "Why does {b} tracking say delivered when nothing is here? Furious.",
    ],
    "tr": [
        "{b} kargom yine kayboldu, bu ay üçüncü kez. Rezalet!",
        "{b} 'alıcı adreste yok' yazmış, bütün gün evdeydim!!",
        "{b} müşteri hizmetlerine ulaşmak imkansız, berbat bir firma.",
        "Paketim ezik ve ıslak geldi, {b} bir daha asla.",
    ],
    "hu": [
        "A {b} megint elvesztette a csomagomat. Borzasztó!",
        "Egész nap vártam a {b} futárt, erre 'nem volt otthon a címzett'. Otthon voltam!",
        "A {b} ügyfélszolgálata használhatatlan, senki nem veszi fel.",
        "Összetörve érkezett a {b} csomag. Soha többé.",
    ],
}

# The spike: a delivery outage of one brand in Turkey (angry Turkish posts, many with handles).
OUTAGE_TR = [
    "{b} kargom 3 gündür 'dağıtımda' görünüyor, hiçbir şey gelmiyor! Rezalet!",
    "{b} sistem çöktü mü? İstanbul'da kimse paketini alamıyor, telefonu da açan yok!",
    "{b} şubesinde yüzlerce paket bekliyor, kurye yok. Bu ne rezillik!",
    "İki gündür {b} takip sayfası hata veriyor, paketim nerede?!",
    "{b} yüzünden annemin ilaçları gelmedi. Utanmıyor musunuz?",
    "Ankara'da da aynı durum, {b} teslimatları tamamen durmuş. Berbat!",
    "{b} müşteri hizmetleri 2 saattir beklemede, sonra kapattılar. Skandal.",
    "{b} ile bir daha asla gönderi yapmam, 5 gündür paketim kayıp.",
]

# Recurring product requests, several phrasings in each language.
REQUESTS = {
    "en": [
        "{b} please add live courier tracking on a map, it's 2026.",
        "Wish {b} would let me pick an exact delivery hour.",
        "{b} really needs a dark mode in the app.",
        "Feature request for {b}: let me redirect a parcel to a neighbour.",
    ],
    "tr": [
        "{b} uygulamasına canlı kurye takibi gelse harika olur.",
        "{b} teslimat saatini seçebilmemiz lazım artık.",
        "{b} uygulamasına karanlık mod ekleyin lütfen.",
    ],
    "hu": [
        "Jó lenne, ha a {b} appban élőben lehetne követni a futárt.",
        "A {b} appba kellene egy sötét mód.",
        "Bárcsak a {b} oldalán órára pontosan lehetne szállítást kérni.",
    ],
}

# Posts that mention two brands at once.
COMPARISONS = {
    "en": ["Switched from {c} to {b} and deliveries are finally on time."],
    "tr": ["{c} yerine {b} kullanmaya başladım, çok daha hızlı."],
    "hu": ["A {c} helyett mostantól a {b}-t használom, sokkal megbízhatóbb."],
}

FIRST_NAMES = {
    "en": ["alex", "sam", "jordan", "priya", "tom", "emma", "li", "noah", "maya", "ben"],
    "tr": ["ayse", "mehmet", "zeynep", "emre", "elif", "burak", "selin", "can", "deniz", "irem"],
    "hu": ["bence", "anna", "mate", "reka", "gergo", "zsofi", "balazs", "dora", "levente", "eszter"],
}
