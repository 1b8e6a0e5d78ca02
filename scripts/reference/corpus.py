"""Original English prose used to train the tiny fixture tokenizers.

Written for Anneal's reference fixtures; not taken from any external corpus.
The text only has to give byte-level BPE a few hundred useful merges, so it
mixes everyday topics (bikes, weather, cooking) with some digits, punctuation
and a little non-ASCII text.
"""

BIKES = """\
The old bike leaned against the fence all winter, and by spring the chain had
turned the colour of dry leaves. I took it to the garage, wiped the rust off
with a rag, and worked a few drops of oil into every link. The wheels still
spun true. The brakes squeaked, so I adjusted the pads until they met the rim
squarely instead of at an angle. A bike does not ask for much: air in the
tyres, oil on the chain, and someone willing to ride it.

On Saturday we rode along the river path. The path is flat for the first
12 kilometres and then climbs gently through the orchard. My sister rode ahead
and rang her bell at every corner, which made the ducks scatter. We stopped at
the bridge to drink water and eat an apple each. A man on a racing bike passed
us twice, going out and coming back, and he waved both times.

Riding in traffic is different. You watch the doors of parked cars, you hold
your line, and you make eye contact with drivers at junctions. Lights matter
after dark: a white lamp in front, a red one behind, and something reflective
on the pedals. I keep a spare tube, two tyre levers and a small pump in the
bag under the saddle, because a puncture always happens far from home.

Gears confuse new riders. The small cog at the back and the big ring at the
front make pedalling hard but fast; the big cog at the back makes hills easy.
Shift before the climb, not halfway up it, and keep your cadence steady. If the
chain skips, the cable may have stretched; half a turn of the barrel adjuster
usually fixes it.
"""

WEATHER = """\
The forecast said rain after noon, but the clouds arrived early. By ten the
sky over the hills was the grey of wet slate, and the wind had turned to come
from the west. Then the first drops fell, fat and cold, and the street smelled
of dust and warm stone. The temperature dropped from 21 to 14 degrees in less
than an hour.

Weather changes the way a town sounds. In the rain, tyres hiss on the road and
gutters gurgle. In snow, everything goes quiet, as if someone had laid a
blanket over the roofs. On a clear, frosty morning you can hear a train from
the next valley and the crunch of boots on the path.

Farmers watch the sky more closely than anyone. A red sky at night may mean a
dry day tomorrow; a ring around the moon often comes before rain. These old
sayings are not always right, but they are right often enough to be
remembered. Today we have satellites and radar, yet people still step outside,
look up, and decide for themselves whether to take an umbrella.

Summer storms build slowly. The air grows heavy, the light turns yellow, and
tall clouds rise like towers in the afternoon. Thunder rolls a long way off at
first. Count the seconds between the flash and the sound, divide by three, and
you have the distance in kilometres. When the count falls below 5, it is time
to go indoors.

In autumn the mornings are misty and the afternoons are bright. Leaves drift
across the lanes, and puddles freeze thin at the edges overnight. Winter
brings short days, long shadows, and the pleasure of coming in from the cold
to a warm kitchen.
"""

COOKING = """\
A good soup starts with an onion. Chop it finely, warm a spoon of oil in a
heavy pot, and let the onion soften slowly over a low flame until it is sweet
and golden. Add two carrots, a stick of celery and a clove of garlic. Stir,
then pour in a litre of stock and let it simmer for 25 minutes. Season with
salt and pepper at the end, because the stock may already be salty.

Bread is patience more than skill. Mix 500 grams of flour with 350 grams of
water, 10 grams of salt and a little yeast. Knead the dough for ten minutes,
cover it, and leave it somewhere warm until it has doubled. Shape the loaf,
let it rise again, and bake it in a hot oven at 230 degrees for about 35
minutes. Tap the bottom: a hollow sound means it is done.

When you cook rice, rinse it first to wash away loose starch. Use one cup of
rice to one and a half cups of water, bring it to the boil, then cover the pot
and turn the heat right down. Do not lift the lid for twelve minutes. Let the
rice rest for five more minutes before you fluff it with a fork.

Eggs are the quickest dinner. Whisk three eggs with a pinch of salt, melt
butter in a pan, and pour the eggs in when the butter stops foaming. Stir
gently with a wooden spoon, and take the pan off the heat while the eggs still
look a little wet; they keep cooking on the plate. Serve them on toast with a
handful of chopped herbs.

My grandmother kept a notebook of recipes. Each page had a date, a list of
ingredients, and a short note such as "too much sugar" or "better with
lemon". The notebook is stained with butter and flour, and it is the most
useful book in the kitchen.
"""

EXTRAS = """\
Questions and answers: What time is it? It's 7:45. Where are the keys? They're
on the hook by the door. Who's cooking tonight? We'll take turns.
Numbers: 0 1 2 3 4 5 6 7 8 9 10 42 100 365 1024 2024 3.14 1,000,000.
Lists:
- flour, water, salt
- helmet, lights, lock
- coat, scarf, gloves
A café on the corner serves crème brûlée and a naïve little pastry. It was
18°C in Zürich — mild for March. Tea costs €3 and coffee £2.50.
    Indented lines keep their spaces.
Tabs	separate	columns	here.
"""


def corpus() -> list[str]:
    """Return the training corpus as a list of paragraphs (stable order)."""
    text = "\n".join([BIKES, WEATHER, COOKING, EXTRAS])
    return [p for p in text.split("\n\n") if p.strip()]
