#!/usr/bin/env python3
"""Generate the training corpus for Anneal's bundled tiny model (anneal-tiny).

Every sentence here was written for Anneal; nothing comes from an external
corpus. Text is produced from many small templates with slot fillers about
everyday topics: bikes and city travel, cooking, weather, gardening, customer
support, animals, household advice and short questions and answers. About 40%
of the bytes are chat conversations rendered in ChatML, whose assistant answers
are plain, sensible and one to three sentences long.

The answers deliberately have no house style: the quick start's LoRA later
teaches one (answers that open with a fixed phrase and close with a summary
line), so the base model must not know it already. `FORBIDDEN_PHRASES` lists
the phrases that must never appear, and generation checks it.

The output is a pure function of the seed and the target size:

    python scripts/tiny_model/corpus.py --out /tmp/anneal-tiny-corpus.txt

writes the documents separated by `<|endoftext|>` lines; make_tiny_model.py
imports `generate_documents` directly.
"""

from __future__ import annotations

import argparse
import random
import re
from dataclasses import dataclass
from pathlib import Path

DEFAULT_SEED = 20261122
DEFAULT_TARGET_BYTES = 2_400_000
CHAT_SHARE = 0.40

DEFAULT_SYSTEM = "You are a helpful assistant."
END_OF_TEXT = "<|endoftext|>"
FORBIDDEN_PHRASES = ("sure thing", "in short")

# --------------------------------------------------------------------------- templating

_CHOICE = re.compile(r"\[([^\[\]]*)\]")
_SLOT = re.compile(r"\{(\w+)\}")


def expand(rng: random.Random, template: str, **slots) -> str:
    """Fill `{slot}` from keyword arguments (a list means: pick one), then resolve
    `[a|b|c]` alternatives, innermost first. `[x|]` means "x or nothing"."""

    def fill(match: re.Match) -> str:
        value = slots[match.group(1)]
        return rng.choice(value) if isinstance(value, (list, tuple)) else str(value)

    text = _SLOT.sub(fill, template)
    while True:
        text, count = _CHOICE.subn(lambda m: rng.choice(m.group(1).split("|")), text)
        if count == 0:
            break
    return re.sub(r"  +", " ", text).strip()


def cap(text: str) -> str:
    """Upper-case the first character."""
    return text[:1].upper() + text[1:]


def lower_first(text: str) -> str:
    """Lower-case the first character unless the first word is 'I' or a proper name we know."""
    first = text.split(" ", 1)[0].rstrip(",.?!'")
    if first in ("I", "I'm", "I've", "I'd", "I'll") or first in PROPER_WORDS:
        return text
    return text[:1].lower() + text[1:]


def join_list(items: list[str]) -> str:
    """'a', 'a and b', 'a, b and c'."""
    if len(items) == 1:
        return items[0]
    return ", ".join(items[:-1]) + " and " + items[-1]


def pick_some(rng: random.Random, items: list, low: int, high: int) -> list:
    """A random subset of between low and high items, in their original order."""
    k = rng.randint(low, min(high, len(items)))
    chosen = sorted(rng.sample(range(len(items)), k))
    return [items[i] for i in chosen]


# --------------------------------------------------------------------------- shared vocabulary

PEOPLE = {
    "Anna": "she", "Ben": "he", "Clara": "she", "David": "he", "Ella": "she",
    "Felix": "he", "Grace": "she", "Hugo": "he", "Ines": "she", "Jack": "he",
    "Kate": "she", "Leo": "he", "Maya": "she", "Nina": "she", "Omar": "he",
    "Paul": "he", "Rosa": "she", "Sam": "he", "Tara": "she", "Tom": "he",
    "Vera": "she", "Will": "he", "Zoe": "she", "Lucas": "he", "Mia": "she",
    "Noah": "he", "Emma": "she", "Ravi": "he", "Sofia": "she", "Jonas": "he",
    "Priya": "she", "Ali": "he", "Elena": "she", "Ivan": "he", "Nora": "she",
    "Oscar": "he", "Hana": "she", "Marco": "he", "Lena": "she", "Daniel": "he",
}
NAMES = list(PEOPLE)
POSSESSIVE = {"she": "her", "he": "his"}
OBJECT = {"she": "her", "he": "him"}

TOWNS = [
    "Riverton", "Eastbrook", "Millford", "Northgate", "Lakeside", "Greenhill",
    "Westport", "Stonebridge", "Oakdale", "Harbourne", "Fairview", "Redcliff",
]
DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
MONTHS = [
    "January", "February", "March", "April", "May", "June", "July",
    "August", "September", "October", "November", "December",
]
NUMBER_WORDS = [
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight",
    "nine", "ten", "eleven", "twelve",
]
COMPANIES = {
    "Brightline": "an internet provider",
    "Oakwood Books": "an online bookshop",
    "Nimbus Mobile": "a phone company",
    "Fresh Basket": "a grocery delivery service",
    "Swiftrail": "a train company",
    "Cosy Home": "a furniture shop",
    "Urban Wheels": "a bike shop",
    "Lumen Energy": "an electricity supplier",
}
PROPER_WORDS = set(NAMES) | set(TOWNS) | set(DAYS) | set(MONTHS) | {
    w for name in COMPANIES for w in name.split()
}


# --------------------------------------------------------------------------- topic facts

@dataclass(frozen=True)
class Dish:
    name: str            # "pancakes", "a tomato soup"
    short: str           # "pancakes", "tomato soup"
    plural: bool         # "they are" vs "it is"
    ingredients: tuple
    steps: tuple
    minutes: int
    serve: str


DISHES = [
    Dish("pancakes", "pancakes", True,
         ("flour", "milk", "two eggs", "a pinch of salt", "a little butter"),
         ("whisk the flour, eggs, milk and salt into a smooth batter",
          "let the batter rest for ten minutes",
          "melt a little butter in a frying pan over medium heat",
          "pour in a thin layer of batter and cook each side for about a minute"),
         20, "Serve them warm with fruit, honey or a little sugar and lemon."),
    Dish("a tomato soup", "tomato soup", False,
         ("ripe tomatoes", "an onion", "two cloves of garlic", "olive oil", "vegetable stock", "salt and pepper"),
         ("chop the onion and garlic and soften them in olive oil",
          "add the chopped tomatoes and the stock",
          "simmer everything for twenty minutes",
          "blend the soup until smooth and season it with salt and pepper"),
         35, "Serve it hot with fresh bread."),
    Dish("a vegetable soup", "vegetable soup", False,
         ("carrots", "potatoes", "an onion", "celery", "vegetable stock", "fresh parsley"),
         ("dice the carrots, potatoes, onion and celery",
          "soften the onion in a large pot with a little oil",
          "add the other vegetables and cover them with stock",
          "simmer for about twenty-five minutes until the potatoes are soft"),
         40, "Sprinkle it with chopped parsley before serving."),
    Dish("fried rice", "fried rice", False,
         ("cooked rice from the day before", "two eggs", "peas", "a spring onion", "soy sauce", "a little oil"),
         ("heat the oil in a wok or a large pan",
          "scramble the eggs and push them to one side",
          "add the cold rice and the peas and stir-fry for a few minutes",
          "season with soy sauce and scatter the spring onion on top"),
         15, "It is a good way to use leftover rice."),
    Dish("an omelette", "omelette", False,
         ("three eggs", "a knob of butter", "salt and pepper", "grated cheese or herbs"),
         ("beat the eggs with a pinch of salt and pepper",
          "melt the butter in a small pan over medium heat",
          "pour in the eggs and stir gently until they start to set",
          "add the cheese or herbs, fold the omelette in half and slide it onto a plate"),
         10, "Eat it straight away while it is soft inside."),
    Dish("pasta with tomato sauce", "pasta with tomato sauce", False,
         ("pasta", "a tin of chopped tomatoes", "garlic", "olive oil", "fresh basil", "salt"),
         ("bring a large pot of salted water to the boil",
          "warm the garlic in olive oil and add the tomatoes",
          "let the sauce simmer while the pasta cooks",
          "drain the pasta and toss it with the sauce and torn basil"),
         25, "Finish it with a little grated cheese if you like."),
    Dish("a lentil soup", "lentil soup", False,
         ("red lentils", "an onion", "a carrot", "cumin", "vegetable stock", "lemon juice"),
         ("soften the chopped onion and carrot in a little oil",
          "stir in the cumin and the rinsed lentils",
          "pour in the stock and simmer for twenty minutes",
          "add a squeeze of lemon juice and season to taste"),
         35, "It keeps well in the fridge for three days."),
    Dish("banana bread", "banana bread", False,
         ("three ripe bananas", "flour", "sugar", "two eggs", "melted butter", "baking powder"),
         ("heat the oven to 180 degrees and line a loaf tin",
          "mash the bananas and mix in the eggs, sugar and butter",
          "fold in the flour and baking powder",
          "bake for about fifty minutes, until a skewer comes out clean"),
         65, "Let it cool before you slice it."),
    Dish("a green salad", "green salad", False,
         ("lettuce", "cucumber", "a few radishes", "olive oil", "vinegar", "a pinch of salt"),
         ("wash and dry the lettuce",
          "slice the cucumber and the radishes",
          "whisk the oil, vinegar and salt into a dressing",
          "toss everything together just before serving"),
         10, "Dress it at the last minute so the leaves stay crisp."),
    Dish("roast potatoes", "roast potatoes", True,
         ("potatoes", "olive oil", "salt", "rosemary"),
         ("heat the oven to 200 degrees",
          "cut the potatoes into chunks and boil them for eight minutes",
          "drain them, toss them in oil, salt and rosemary",
          "roast them for about forty minutes, turning them once"),
         55, "They go well with almost any meal."),
    Dish("porridge", "porridge", False,
         ("rolled oats", "milk or water", "a pinch of salt", "fruit or honey"),
         ("put the oats and the milk in a small pan",
          "bring it to a gentle simmer",
          "stir for about five minutes until it is thick and creamy",
          "top it with fruit or a spoon of honey"),
         10, "It is a warm and filling breakfast."),
    Dish("scrambled eggs", "scrambled eggs", True,
         ("eggs", "butter", "a splash of milk", "salt and pepper"),
         ("beat the eggs with the milk and a pinch of salt",
          "melt the butter in a pan over low heat",
          "pour in the eggs and stir slowly with a spatula",
          "take the pan off the heat while the eggs are still a little soft"),
         10, "Serve them on hot buttered toast."),
    Dish("a vegetable curry", "vegetable curry", False,
         ("an onion", "garlic", "ginger", "curry powder", "a tin of coconut milk", "chickpeas", "spinach"),
         ("fry the onion, garlic and ginger until soft",
          "stir in the curry powder and cook it for a minute",
          "add the coconut milk and the chickpeas and simmer for fifteen minutes",
          "stir in the spinach until it wilts"),
         35, "Serve it with rice or flatbread."),
    Dish("a loaf of bread", "bread", False,
         ("strong flour", "water", "yeast", "salt"),
         ("mix the flour, yeast, salt and warm water into a dough",
          "knead the dough for ten minutes until it is smooth",
          "let it rise for an hour until it has doubled in size",
          "shape the loaf and bake it at 220 degrees for about thirty minutes"),
         120, "Let it cool on a rack before you cut it."),
    Dish("an apple crumble", "apple crumble", False,
         ("cooking apples", "sugar", "cinnamon", "flour", "butter", "oats"),
         ("peel and slice the apples and toss them with sugar and cinnamon",
          "rub the flour and butter together until it looks like breadcrumbs",
          "stir in the oats and scatter the crumble over the apples",
          "bake at 180 degrees for about forty minutes until golden"),
         55, "It is lovely with custard or cream."),
    Dish("a grilled cheese sandwich", "grilled cheese sandwich", False,
         ("two slices of bread", "cheese", "butter"),
         ("butter the outside of both slices of bread",
          "put the cheese between the slices",
          "cook the sandwich in a pan over medium heat",
          "turn it once, when the bottom is golden and crisp"),
         10, "Cut it in half and eat it while the cheese is melted."),
    Dish("hummus", "hummus", False,
         ("a tin of chickpeas", "tahini", "a lemon", "a clove of garlic", "olive oil", "salt"),
         ("drain the chickpeas and keep a little of the liquid",
          "blend them with the tahini, lemon juice, garlic and salt",
          "add a splash of the liquid until the hummus is smooth",
          "drizzle it with olive oil before serving"),
         10, "Eat it with bread or raw vegetables."),
    Dish("boiled rice", "rice", False,
         ("rice", "water", "a pinch of salt"),
         ("rinse the rice in cold water",
          "put one cup of rice and two cups of water in a pot with a pinch of salt",
          "bring it to the boil, cover it and turn the heat down low",
          "cook for twelve minutes, then let it rest with the lid on for five minutes"),
         20, "Fluff it with a fork before serving."),
]


@dataclass(frozen=True)
class Plant:
    name: str        # "tomatoes", "basil"
    plural: bool
    sow: str         # "in spring, after the last frost"
    sun: str
    water: str
    harvest: str
    tip: str


PLANTS = [
    Plant("tomatoes", True, "in late spring, once the nights are warm", "full sun",
          "water them deeply at the base two or three times a week",
          "about ten weeks after planting", "Tie the stems to a stake as they grow."),
    Plant("carrots", True, "from early spring to early summer", "full sun",
          "keep the soil evenly moist", "about ten to twelve weeks after sowing",
          "Sow them thinly in loose soil without stones."),
    Plant("lettuce", False, "in spring or early autumn", "sun or light shade",
          "water it little and often", "about six to eight weeks after sowing",
          "Sow a short row every two weeks for a steady supply."),
    Plant("basil", False, "in late spring, when it is warm", "a sunny, sheltered spot",
          "water it in the morning and keep the leaves dry",
          "as soon as the plant has six or more leaves",
          "Pinch off the tips so the plant grows bushy."),
    Plant("potatoes", True, "in early spring", "full sun",
          "water them well when the flowers appear", "about three to four months after planting",
          "Pile soil around the stems as they grow."),
    Plant("strawberries", True, "in spring or late summer", "full sun",
          "water them at the base and keep the fruit off wet soil",
          "in early summer of the following year",
          "Put straw under the fruit to keep it clean."),
    Plant("beans", True, "in late spring, after the last frost", "full sun",
          "water them often once the flowers appear", "about eight to ten weeks after sowing",
          "Give climbing beans tall canes to grow up."),
    Plant("peas", True, "in early spring", "full sun or light shade",
          "keep the soil moist but not soggy", "about twelve weeks after sowing",
          "Pick the pods often and the plants will make more."),
    Plant("sunflowers", True, "in spring, after the last frost", "full sun",
          "water them deeply once a week", "in late summer, when the heads turn brown",
          "Plant them against a wall or fence out of the wind."),
    Plant("onions", True, "in early spring", "full sun",
          "water them only in dry weather", "in late summer, when the leaves turn yellow",
          "Keep the bed free of weeds."),
    Plant("garlic", False, "in autumn", "full sun",
          "water it only when the soil is very dry", "in early summer of the next year",
          "Plant each clove with the pointed end up."),
    Plant("courgettes", True, "in late spring", "full sun",
          "water them generously at the base", "about eight weeks after planting",
          "Pick them small and the plant keeps producing."),
    Plant("radishes", True, "from spring to early autumn", "sun or light shade",
          "keep the soil moist so they stay mild", "about four weeks after sowing",
          "They are one of the quickest crops to grow."),
    Plant("mint", False, "in spring", "sun or partial shade",
          "keep the soil moist", "whenever you need a few leaves",
          "Grow it in a pot, because it spreads quickly."),
    Plant("roses", True, "in autumn or early spring", "at least six hours of sun a day",
          "water them deeply once a week in dry weather", "from early summer onwards",
          "Cut off the faded flowers to get more blooms."),
    Plant("spinach", False, "in early spring or late summer", "light shade",
          "water it regularly so it does not bolt", "about six weeks after sowing",
          "Pick the outer leaves first."),
    Plant("cucumbers", True, "in late spring, when the soil is warm", "full sun",
          "water them every day in hot weather", "about eight weeks after planting",
          "Let them climb a net to save space."),
    Plant("tulips", True, "in autumn", "full sun",
          "water the bulbs once after planting and then leave them", "in spring",
          "Plant the bulbs about three times as deep as they are tall."),
]


@dataclass(frozen=True)
class Weather:
    word: str        # "rainy"
    noun: str        # "rain"
    low: int
    high: int
    sky: tuple
    detail: tuple
    advice: tuple


WEATHER = [
    Weather("sunny", "sunshine", 18, 30,
            ("clear blue skies", "bright sunshine all day", "a cloudless sky"),
            ("There will be a light breeze in the afternoon.",
             "It will feel warm in the sun, so drink plenty of water.",
             "The evening will stay mild and dry."),
            ("Wear sunscreen and a hat, and carry a bottle of water.",
             "It is a good day to eat outside or go for a bike ride.",
             "Light clothes and sunglasses are a good idea.")),
    Weather("rainy", "rain", 8, 17,
            ("grey skies and steady rain", "showers for most of the day", "heavy clouds and rain"),
            ("The rain will be heaviest in the morning.",
             "Roads will be wet and slippery, so take care.",
             "There may be a short dry spell in the late afternoon."),
            ("Take an umbrella or a waterproof jacket.",
             "Wear shoes that can cope with puddles.",
             "If you cycle, leave a little more room to brake.")),
    Weather("snowy", "snow", -6, 2,
            ("falling snow and low clouds", "snow showers", "a white sky and light snow"),
            ("Up to ten centimetres of snow may settle on the ground.",
             "Pavements will be icy in the evening.",
             "Buses may run late because of the snow."),
            ("Wear a warm coat, gloves and boots with a good grip.",
             "Walk carefully and allow extra time for your journey.",
             "Keep a scarf and a hat with you.")),
    Weather("windy", "wind", 6, 16,
            ("fast clouds and strong gusts", "a blustery sky", "sunny spells and a strong wind"),
            ("Gusts may reach sixty kilometres an hour near the coast.",
             "The wind will ease a little after dark.",
             "Loose bins and garden chairs may blow over."),
            ("Wear a jacket that will not flap in the wind.",
             "Cyclists should expect hard work against the wind.",
             "Tie down anything light in the garden.")),
    Weather("foggy", "fog", 3, 12,
            ("thick fog in the morning", "low cloud and mist", "a grey, misty sky"),
            ("The fog should lift by the middle of the day.",
             "Visibility may drop below a hundred metres.",
             "It will feel damp and cool all day."),
            ("Drive slowly and use dipped headlights.",
             "Wear something bright if you walk or cycle.",
             "Allow extra time, because trains and buses may be delayed.")),
    Weather("cloudy", "cloud", 10, 19,
            ("a thick layer of cloud", "grey skies with a few bright spells", "overcast skies"),
            ("It will stay dry for most of the day.",
             "There is a small chance of a light shower in the evening.",
             "The sun may break through late in the afternoon."),
            ("A light jacket should be enough.",
             "It is fine weather for a walk in the park.",
             "Take a thin sweater in case it turns cool.")),
    Weather("stormy", "thunderstorms", 14, 25,
            ("dark clouds and thunderstorms", "heavy showers with thunder", "a stormy sky"),
            ("Storms will build in the afternoon and may bring hail.",
             "There may be flooding on some low roads.",
             "Lightning is likely in the evening."),
            ("Stay indoors during the worst of the storm if you can.",
             "Do not shelter under tall trees.",
             "Unplug sensitive electronics if lightning is close.")),
    Weather("frosty", "frost", -5, 4,
            ("clear skies and a hard frost", "a bright, cold morning", "frost on the grass and a pale sun"),
            ("Car windows will need scraping in the morning.",
             "Shady paths may stay icy all day.",
             "The night will be even colder than the day."),
            ("Wear warm layers, gloves and a hat.",
             "Cover tender plants in the garden overnight.",
             "Walk carefully on icy paths.")),
]

ANIMALS = [
    # name, plural, sound, food, home, fact
    ("cat", "cats", "meows", "meat and fish", "in houses with people",
     "Cats sleep for up to sixteen hours a day."),
    ("dog", "dogs", "barks", "meat, biscuits and some vegetables", "in houses with people",
     "Dogs have a very strong sense of smell."),
    ("cow", "cows", "moos", "grass and hay", "on farms",
     "Cows spend many hours a day chewing."),
    ("sheep", "sheep", "bleats", "grass", "on farms and in hills",
     "Sheep grow a thick coat of wool that is cut once a year."),
    ("horse", "horses", "neighs", "grass, hay and oats", "on farms and in stables",
     "Horses can sleep standing up."),
    ("duck", "ducks", "quacks", "plants, seeds and small insects", "near ponds and rivers",
     "Ducks have waterproof feathers."),
    ("owl", "owls", "hoots", "mice and insects", "in woods and old barns",
     "Owls can turn their heads a long way round."),
    ("frog", "frogs", "croaks", "insects and worms", "near ponds and in wet grass",
     "Frogs start life as tadpoles in the water."),
    ("bee", "bees", "buzzes", "nectar and pollen from flowers", "in hives and nests",
     "Bees help plants by carrying pollen from flower to flower."),
    ("lion", "lions", "roars", "meat", "on the grasslands of Africa",
     "Lions live in groups called prides."),
    ("pig", "pigs", "grunts", "almost anything, from grain to vegetables", "on farms",
     "Pigs are clever and can learn tricks."),
    ("hen", "hens", "clucks", "grain, seeds and insects", "on farms and in gardens",
     "A hen can lay an egg almost every day."),
    ("mouse", "mice", "squeaks", "seeds and grain", "in fields, woods and sometimes houses",
     "Mice can squeeze through very small gaps."),
    ("wolf", "wolves", "howls", "meat", "in forests and mountains",
     "Wolves live and hunt in packs."),
    ("goat", "goats", "bleats", "grass, leaves and shrubs", "on farms and rocky hills",
     "Goats are very good at climbing."),
    ("elephant", "elephants", "trumpets", "grass, leaves and fruit", "in Africa and Asia",
     "Elephants are the largest animals that live on land."),
    ("snake", "snakes", "hisses", "mice, eggs and insects", "in grass, forests and deserts",
     "Snakes smell the air with their tongues."),
    ("squirrel", "squirrels", "chatters", "nuts and seeds", "in trees in parks and woods",
     "Squirrels bury nuts in autumn to eat in winter."),
]

THINGS = [
    # word, definition (one sentence, starts after "A ...")
    ("bicycle", "a vehicle with two wheels that you move by pushing the pedals"),
    ("helmet", "a hard hat that protects your head if you fall"),
    ("umbrella", "a folding cover on a stick that keeps the rain off you"),
    ("kettle", "a pot with a spout that is used to boil water"),
    ("library", "a place where you can borrow books for free"),
    ("bakery", "a shop that makes and sells bread and cakes"),
    ("tram", "a kind of electric train that runs on rails in the street"),
    ("timetable", "a list that shows when buses or trains leave and arrive"),
    ("receipt", "a piece of paper or an email that shows what you paid"),
    ("recipe", "a list of ingredients and steps that tells you how to cook a dish"),
    ("compost", "a mix of rotted plant waste that makes soil richer"),
    ("greenhouse", "a building made of glass where plants are kept warm"),
    ("thermometer", "a tool that measures temperature"),
    ("forecast", "a statement about what the weather is likely to be"),
    ("password", "a secret word or phrase that lets you into an account"),
    ("invoice", "a document that lists what you bought and how much you owe"),
    ("refund", "money that is paid back to you, for example when you return something"),
    ("pump", "a tool that pushes air into a tyre or a ball"),
    ("saddle", "the seat of a bicycle"),
    ("map", "a drawing of an area that shows roads, places and paths"),
    ("ticket", "a small card or code that shows you have paid for a journey or an event"),
    ("oven", "a closed box in a kitchen that heats food to bake or roast it"),
    ("spade", "a tool with a flat blade that is used for digging"),
    ("seed", "the small part of a plant from which a new plant grows"),
    ("cloud", "a mass of tiny water drops floating in the sky"),
    ("rainbow", "an arc of colours in the sky when the sun shines through rain"),
    ("router", "a small box that connects your home devices to the internet"),
    ("battery", "a store of electrical energy that powers a device"),
    ("calendar", "a chart of the days, weeks and months of the year"),
    ("bridge", "a structure that carries a road or path over a river or valley"),
    ("market", "a place where people buy and sell food and goods from stalls"),
    ("pharmacy", "a shop where you can buy medicine"),
    ("station", "a place where trains or buses stop to let people on and off"),
    ("cycle lane", "a part of the road that is marked for bicycles only"),
    ("colander", "a bowl with holes that is used to drain pasta or wash vegetables"),
    ("whisk", "a kitchen tool made of wire loops that is used to beat eggs or cream"),
    ("watering can", "a container with a spout that is used to water plants"),
    ("bus stop", "a place at the side of the road where buses stop"),
]

COLOURS = [
    ("the sky on a clear day", "blue"), ("grass", "green"), ("snow", "white"),
    ("a ripe banana", "yellow"), ("a ripe tomato", "red"), ("coal", "black"),
    ("a carrot", "orange"), ("milk", "white"), ("a lemon", "yellow"),
    ("a strawberry", "red"), ("a lettuce leaf", "green"), ("the sea on a sunny day", "blue"),
]

OPPOSITES = [
    ("hot", "cold"), ("big", "small"), ("fast", "slow"), ("early", "late"),
    ("open", "closed"), ("full", "empty"), ("light", "dark"), ("up", "down"),
    ("wet", "dry"), ("old", "new"), ("happy", "sad"), ("easy", "hard"),
    ("near", "far"), ("loud", "quiet"), ("cheap", "expensive"), ("long", "short"),
]


# --------------------------------------------------------------------------- fixed intents
# Each intent: (topic, questions, answers). Questions and answers may use [a|b]
# alternatives; an answer is plain and one to three sentences long.

BIKE_INTENTS = [
    ("bike", ["How do I fix a flat tyre on my bike?", "My bike has a flat tyre. What should I do?",
              "How can I repair a puncture?", "What is the best way to fix a flat bike tyre?"],
     ["Take the wheel off, lever the tyre off the rim and pull out the tube. Find the hole, patch it or fit a new tube, and pump the tyre back up to the pressure printed on its side.",
      "Remove the wheel and take out the inner tube. [Pump a little air into it|Listen and feel for air] to find the hole, then put a patch on it or use a spare tube, and check the tyre for glass before you refit it."]),
    ("bike", ["How often should I oil my bike chain?", "When should I oil the chain?",
              "My chain is squeaking. What should I do?", "How do I look after my bike chain?"],
     ["Oil the chain every few weeks, and always after riding in the rain. Put one drop on each link, turn the pedals and wipe off the extra oil with a rag.",
      "A squeaky chain is a dry chain. Clean it with a rag, add a drop of chain oil to each link and wipe away what is left on the outside."]),
    ("bike", ["How high should my saddle be?", "How do I set my saddle height?",
              "My knees hurt when I cycle. Is my saddle too low?"],
     ["Sit on the saddle with your heel on the pedal at its lowest point. Your leg should be almost straight, so that with the ball of your foot on the pedal your knee stays slightly bent.",
      "A saddle that is too low often causes knee pain. Raise it until your leg is nearly straight at the bottom of each pedal stroke."]),
    ("bike", ["What tyre pressure should I use?", "How hard should I pump my bike tyres?",
              "How do I know if my tyres need air?"],
     ["Look at the side of the tyre, where the right pressure range is printed. Road tyres usually need more air than wide city or mountain bike tyres.",
      "Squeeze the tyre with your thumb: it should feel firm and barely give. For the exact number, check the range printed on the side of the tyre."]),
    ("bike", ["Do I need lights on my bike?", "What lights should I use when I cycle at night?",
              "Is it safe to cycle in the dark?"],
     ["Yes, use a white light at the front and a red light at the back whenever it is dark. Reflectors and bright clothes make you easier to see as well.",
      "Cycling at night is fine if other people can see you. Switch on a white front light and a red rear light, and check that the batteries are charged before you set off."]),
    ("bike", ["Should I wear a helmet?", "Is a bike helmet worth it?", "How should a helmet fit?"],
     ["A helmet protects your head if you fall, so it is a good idea on every ride. It should sit level on your head and feel snug, with the strap closed under your chin.",
      "Yes, a well fitted helmet can prevent serious injuries. Choose one that sits just above your eyebrows and does not move when you shake your head."]),
    ("bike", ["How should I lock my bike?", "What is the safest way to lock a bike?",
              "How do I stop my bike from being stolen?"],
     ["Use a strong lock and pass it through the frame and a wheel to something solid, like a bike rack. Park in a busy, well lit place and take lights and bags with you.",
      "Lock the frame, not just a wheel, to a fixed rack. A good D-lock together with a cable for the front wheel makes your bike much harder to steal."]),
    ("bike", ["How do I use the gears on my bike?", "When should I change gear?",
              "Which gear is best for going uphill?"],
     ["Use a low gear, with the big cog at the back, for climbing and starting off, and a higher gear on flat roads. Change gear before the hill, while you are still pedalling smoothly.",
      "Shift to an easier gear before a climb, not halfway up it. Keep pedalling lightly while you change, and try to keep a steady rhythm."]),
    ("bike", ["Is it safe to cycle in the rain?", "Any tips for riding a bike in the rain?",
              "How do I cycle when it is wet?"],
     ["Yes, if you ride a little slower. Brakes take longer to work when wet, so brake early, and take care on painted lines, metal covers and tram rails.",
      "Wear a waterproof jacket, use your lights and leave more room to stop. Mudguards keep you much drier."]),
    ("bike", ["Can I take my bike on the train?", "Can I bring a bike on the tram?",
              "Are bikes allowed on public transport?", "Can I take a bike on the bus?"],
     ["It depends on the city and the line. Many trains allow bikes outside rush hour, sometimes with a separate ticket, so check the rules of your transport company before you travel.",
      "Often yes, but usually not at busy times. Look for carriages with a bike symbol, and check whether you need an extra ticket for the bike."]),
    ("bike", ["How do I clean my bike?", "What is the best way to wash a bike?"],
     ["Rinse off the mud with a bucket of water and a soft brush, then clean the frame with a little soapy water. Dry the chain afterwards and give it a drop of oil.",
      "Use warm soapy water and a sponge, not a pressure washer, because strong jets push water into the bearings. Dry the bike and oil the chain when you are done."]),
    ("bike", ["My brakes are squeaking. What can I do?", "How do I adjust my bike brakes?",
              "My brakes feel weak. Is that dangerous?"],
     ["Weak brakes are a safety problem, so check them before your next ride. Clean the rims or discs, and if the pads are worn, replace them or ask a bike shop to adjust them.",
      "Squeaking often comes from dirt or oil on the rims or discs. Clean them with a dry cloth and check that the brake pads meet the rim squarely."]),
    ("bike", ["What kind of bike should I buy for the city?", "I want to buy a bike for commuting. Any advice?",
              "Which bike is good for short trips in town?"],
     ["For city riding, a bike with mudguards, lights, a rack and a few gears is very practical. Try a few sizes in a shop and pick one that feels comfortable and upright.",
      "A simple city bike or hybrid is a good choice for commuting. Look for comfort, reliable brakes and room to carry a bag."]),
    ("bike", ["How do bike-sharing schemes work?", "How do I rent a bike in the city?",
              "How does a shared city bike work?"],
     ["Most bike-sharing schemes use an app: you find a bike on the map, unlock it with a code, and pay for the time you ride. When you finish, you park it in an allowed area and lock it.",
      "You usually register in the operator's app, unlock a bike by scanning it, and pay per minute or with a pass. Check where you are allowed to leave the bike before you end the ride."]),
    ("bike", ["I am nervous about cycling in traffic. Any tips?", "How can I feel safer cycling in the city?"],
     ["Start with quiet streets and cycle lanes at calm times of the day. Ride a little away from parked cars, make eye contact with drivers and signal clearly before you turn.",
      "Plan a route with cycle lanes and quiet roads, and practise it on a weekend first. Confidence comes quickly once you know the way."]),
    ("travel", ["What is the best way to get around a city?", "Should I walk, cycle or take the bus in town?"],
     ["For short trips, walking or cycling is often the quickest and cheapest. For longer distances, buses, trams and trains save time, especially at rush hour.",
      "It depends on the distance and the weather. Within a couple of kilometres walking or cycling works well, and for anything further public transport is usually best."]),
    ("travel", ["How do I buy a bus ticket?", "Where can I get a tram ticket?",
                "Do I need a ticket before I get on the tram?"],
     ["In many cities you can buy a ticket from a machine at the stop, in the transport app, or with a contactless card on board. Check the local rules, because some cities require you to buy before you board.",
      "Most transport companies sell tickets in their app and at machines at larger stops. Remember to validate a paper ticket if the city asks you to."]),
    ("travel", ["How early should I get to the train station?", "How long before my train should I arrive?"],
     ["Ten to fifteen minutes is usually enough for a local train. For a long journey with luggage or a seat to find, arrive about twenty minutes early.",
      "Give yourself enough time to find the platform and buy a ticket, usually about fifteen minutes. Check the departure board for changes when you arrive."]),
    ("travel", ["My train is delayed. What should I do?", "What can I do if my train is cancelled?"],
     ["Check the departure board or the rail company's app for the next train. If the delay is long, you may be able to claim some money back, so keep your ticket.",
      "Ask the staff at the station about other routes and keep your ticket. Many rail companies pay compensation for long delays."]),
    ("travel", ["How can I find my way in a new city?", "I am lost. How do I find my way?"],
     ["A map app on your phone is the easiest way to find a route. You can also look for signs to the centre or the station, or simply ask someone nearby.",
      "Find a street name or a landmark and check it on a map. If your phone is not working, ask a shop or a passer-by for directions."]),
]

COOKING_INTENTS = [
    ("cooking", ["What should I cook for dinner tonight?", "I have no idea what to make for dinner. Any ideas?",
                 "Can you suggest a quick dinner?"],
     ["A simple pasta with tomato sauce takes about twenty-five minutes and needs only a few things. If you have eggs and some vegetables, an omelette or fried rice is even quicker.",
      "How about a vegetable soup or a curry with rice? Both are easy, filling and use whatever vegetables you have."]),
    ("cooking", ["How do I keep bread fresh?", "How should I store bread?"],
     ["Keep bread in a paper bag or a bread box at room temperature, not in the fridge. If you will not eat it within two days, slice it and freeze it.",
      "Store it in a cloth or paper bag in a cool, dry place. Sliced bread freezes well and can be toasted straight from the freezer."]),
    ("cooking", ["How long can I keep leftovers in the fridge?", "Are leftovers from three days ago safe to eat?"],
     ["Most cooked leftovers are fine for about three days in the fridge. Cool them quickly, keep them covered, and heat them until they are hot all the way through.",
      "Three days is a good rule for cooked food kept in a cold fridge. If it smells or looks wrong, throw it away."]),
    ("cooking", ["How do I chop an onion without crying?", "Why do onions make me cry?"],
     ["Onions release a gas that stings your eyes when you cut them. A very sharp knife and a cold onion help, and so does cutting near an open window.",
      "Chill the onion for a while before you cut it and use a sharp knife. Cut off the root end last, because that part releases the most gas."]),
    ("cooking", ["How do I boil an egg?", "How long should I boil an egg?"],
     ["Lower the egg into boiling water. Cook it for six minutes for a soft yolk or about ten minutes for a hard one, then cool it in cold water.",
      "Put the egg into gently boiling water and set a timer: six minutes gives a runny yolk and ten minutes a firm one."]),
    ("cooking", ["What can I cook with very few ingredients?", "I only have eggs, bread and cheese. What can I make?"],
     ["With eggs, bread and cheese you can make an omelette, scrambled eggs on toast or a grilled cheese sandwich. All of them take about ten minutes.",
      "Simple dishes like porridge, an omelette or pasta with garlic and oil need only a few ingredients and are ready in minutes."]),
    ("cooking", ["How do I make my food less salty?", "I put too much salt in my soup. Can I fix it?"],
     ["Add more of the unsalted ingredients, like water, stock without salt or extra vegetables. A squeeze of lemon juice can also balance the taste.",
      "Thin the soup with water or unsalted stock and add some more vegetables or potatoes. Taste it again before serving."]),
    ("cooking", ["How do I cook pasta properly?", "How much water do I need for pasta?"],
     ["Use a large pot of well salted, boiling water, about a litre for every hundred grams of pasta. Stir it at the start and taste it a minute before the time on the packet.",
      "Boil plenty of salted water, add the pasta and stir so it does not stick. Drain it when it is tender but still has a little bite."]),
    ("cooking", ["How do I know when chicken is cooked?", "Is my chicken done?"],
     ["Cut into the thickest part: the meat should be white all the way through and the juices should run clear. A kitchen thermometer should show at least 75 degrees.",
      "Chicken is cooked when there is no pink meat left and the juices are clear. If you are unsure, cook it a few minutes longer."]),
    ("cooking", ["What is a healthy breakfast?", "Can you suggest a good breakfast?"],
     ["Porridge with fruit, eggs on wholemeal toast or yoghurt with nuts are all good choices. They keep you full for longer than sugary cereal.",
      "A good breakfast has some protein and fibre, like eggs, oats or yoghurt, with a piece of fruit on the side."]),
]

WEATHER_INTENTS = [
    ("weather", ["Will it rain tomorrow?", "What will the weather be like tomorrow?",
                 "Is it going to be sunny this weekend?", "What is the weather today?"],
     ["I cannot see a live forecast, so please check a weather app or the local news for your area. If the sky looks dark and grey, taking an umbrella is a safe bet.",
      "I do not have access to current weather data. A weather service for your town will give you an up-to-date forecast for the next few days."]),
    ("weather", ["Why is the sky blue?", "What makes the sky blue?"],
     ["Sunlight is made of many colours, and the air scatters blue light much more than red light. That scattered blue light reaches our eyes from every part of the sky.",
      "Air molecules scatter the short blue waves of sunlight more than the other colours, so the whole sky looks blue on a clear day."]),
    ("weather", ["What causes thunder?", "Why is there thunder after lightning?"],
     ["Lightning heats the air so quickly that it expands with a loud bang, which we hear as thunder. Light travels faster than sound, so we see the flash first.",
      "Thunder is the sound of air that has been suddenly heated by lightning. Count the seconds between the flash and the thunder and divide by three to get the distance in kilometres."]),
    ("weather", ["How does a rainbow form?", "When can I see a rainbow?"],
     ["A rainbow appears when sunlight shines through raindrops, which split the light into its colours. You see it when the sun is behind you and the rain is in front of you.",
      "Look for a rainbow when the sun comes out during or just after a shower, with the sun at your back."]),
    ("weather", ["Why is it colder in winter?", "What causes the seasons?"],
     ["The Earth is tilted, so in winter your part of the world leans away from the sun. The sunlight arrives at a lower angle and the days are shorter, so the ground warms less.",
      "The seasons come from the tilt of the Earth. When your half of the planet leans towards the sun, days are longer and warmer, and when it leans away, you get winter."]),
    ("weather", ["What is the difference between weather and climate?"],
     ["Weather is what happens in the sky over hours or days, like a rainy afternoon. Climate is the usual pattern of weather in a place over many years.",
      "Weather changes from day to day, while climate describes the average conditions of a region over a long time."]),
]

GARDEN_INTENTS = [
    ("garden", ["How often should I water my plants?", "How much water do plants need?"],
     ["Most plants like a deep watering once or twice a week rather than a little every day. Push a finger into the soil, and water when the top few centimetres feel dry.",
      "It depends on the plant, the pot and the weather. Water when the top of the soil is dry, and give pots more water in hot weather."]),
    ("garden", ["Why are the leaves on my plant turning yellow?", "My plant has yellow leaves. What is wrong?"],
     ["Yellow leaves often mean too much water or poor drainage. Let the soil dry out a little between waterings and make sure the pot has holes in the bottom.",
      "The most common causes are overwatering, too little light or a lack of nutrients. Check the soil first, and feed the plant if it has not been fed for a long time."]),
    ("garden", ["How do I start a compost heap?", "What can I put in my compost?"],
     ["Mix green waste, like vegetable peelings and grass, with brown waste, like dry leaves and cardboard. Keep the heap damp and turn it every few weeks.",
      "Fruit and vegetable scraps, coffee grounds, leaves and plain cardboard all compost well. Leave out meat, fish and dairy, because they attract pests."]),
    ("garden", ["How do I get rid of slugs?", "Slugs are eating my lettuce. What can I do?"],
     ["Go out on a damp evening and pick the slugs off by hand. A ring of grit around young plants and a beer trap sunk into the soil also help.",
      "Protect young plants with a barrier of sharp grit or copper tape, and water in the morning so the soil is drier at night, when slugs come out."]),
    ("garden", ["What can I grow on a balcony?", "I only have a small balcony. Can I still grow food?"],
     ["Yes, many herbs, lettuce, radishes, strawberries and cherry tomatoes grow well in pots. Choose a sunny spot and use containers with drainage holes.",
      "A balcony is enough for herbs like basil and mint, salad leaves and even a tomato plant. Pots dry out quickly, so water them often in summer."]),
    ("garden", ["When should I mow the lawn?", "How often should I cut the grass?"],
     ["Mow about once a week in spring and summer, when the grass is dry. Do not cut it too short, because longer grass stays greener in dry weather.",
      "Cut the grass when it is dry, roughly once a week in the growing season, and take off no more than a third of its height at a time."]),
    ("garden", ["How do I look after a houseplant?", "How do I keep my houseplants alive?"],
     ["Give it the right amount of light for its kind, water it when the top of the soil is dry and feed it now and then in spring and summer. Most houseplants die from too much water, not too little.",
      "Find out whether your plant likes bright light or shade, and do not let it stand in water. Wipe dusty leaves so they can take in light."]),
]

SUPPORT_INTENTS = [
    ("support", ["Where is my order?", "How can I track my order?", "My order has not arrived yet.",
                 "I ordered something a week ago and it still has not come."],
     ["I am sorry it has not arrived yet. You can track your order with the link in your confirmation email, and if it shows no update for several days, {company} support can open an investigation for you.",
      "Please check the tracking link in your order confirmation. If the parcel is marked as delivered but you do not have it, contact {company} with your order number and they will look into it."]),
    ("support", ["How do I return an item?", "I want to return something I bought.",
                 "Can I send back a product I do not like?"],
     ["Most items can be returned within thirty days in their original condition. Start the return from your account, print the label and drop the parcel at a collection point.",
      "Log in to your {company} account, choose the order and select the item you want to return. You will get a return label, and the refund is made once the item arrives back."]),
    ("support", ["When will I get my refund?", "How long does a refund take?"],
     ["Refunds are usually made within five working days after the returned item is received. Your bank may need a few more days to show the money in your account.",
      "Once the return has been checked, the money goes back to the card you paid with. This normally takes up to a week."]),
    ("support", ["I forgot my password.", "How do I reset my password?", "I cannot log in to my account."],
     ["Click on Forgot password on the login page and enter your email address. You will receive a link to set a new password, so check your spam folder if it does not arrive.",
      "You can reset it from the login page with the Forgot password link. If you no longer have access to your email, contact {company} support and they will help you verify your account."]),
    ("support", ["The item I received is damaged.", "My parcel arrived broken.", "What do I do if my order arrived damaged?"],
     ["I am sorry about that. Please take a photo of the damage and the packaging and send it to {company} support with your order number, and they will send a replacement or a refund.",
      "Please do not throw the packaging away yet. Contact support with a photo of the damaged item, and they will arrange a replacement or give you your money back."]),
    ("support", ["How do I cancel my subscription?", "I want to cancel my contract.", "Can I stop my monthly plan?"],
     ["You can cancel in your account settings under Subscription. The plan stays active until the end of the current billing period, and you will not be charged again.",
      "Go to your account, open the subscription page and choose Cancel. If you have a minimum contract term, {company} will tell you the end date before you confirm."]),
    ("support", ["How do I change my delivery address?", "I moved house. How do I update my address?"],
     ["You can change your address in your account under Personal details. For an order that has already been sent, contact support as soon as possible to see if it can be redirected.",
      "Update the address in your account settings. It will be used for all new orders, but orders already on their way may still go to the old address."]),
    ("support", ["What are your opening hours?", "When is your customer service open?"],
     ["{company} customer service is open from Monday to Friday, from nine in the morning to six in the evening. You can also send a message at any time and they will reply on the next working day.",
      "The support team works on weekdays during office hours. Outside those times you can leave a message and someone will get back to you."]),
    ("support", ["Can I speak to a real person?", "I would like to talk to someone.", "How do I contact support?"],
     ["Of course. You can call the {company} support line during office hours or use the contact form on the website, and a member of the team will answer you.",
      "You can reach a person by phone on weekdays or by the chat on the {company} website. Have your account or order number ready to save time."]),
    ("support", ["I received the wrong item.", "This is not what I ordered."],
     ["I am sorry for the mix-up. Please contact {company} support with your order number and a photo of what you received, and they will send the right item and collect the wrong one.",
      "That should not happen. Report it from your account or contact support, and you will get the correct item at no extra cost."]),
    ("support", ["My internet is very slow.", "The internet keeps dropping. What can I do?", "My wifi is not working."],
     ["First, restart your router by unplugging it for thirty seconds. If it is still slow, try a device close to the router or with a cable, and contact your provider if the problem continues.",
      "Restart the router and check whether other devices have the same problem. Thick walls and distance weaken wifi, so moving the router to a central spot can help."]),
    ("support", ["I was charged twice.", "There is a payment on my card that I do not recognise.", "Why was I charged twice?"],
     ["I am sorry about that. A second charge is sometimes only a temporary hold that disappears within a few days, but if it stays, send your bank statement to {company} support and they will refund it.",
      "Please check whether the second payment is marked as pending, because those usually disappear. If both payments are complete, contact support and they will return the extra one."]),
    ("support", ["How do I update my payment card?", "My card expired. How do I change it?"],
     ["Open your account settings, go to Payment methods and add the new card. You can then set it as the default and remove the old one.",
      "You can add a new card in the payment section of your account. Future payments will use the card you mark as default."]),
]

GENERAL_INTENTS = [
    ("general", ["Hello!", "Hi there!", "Hi.", "Good morning!", "Hey!"],
     ["Hello! How can I help you today?", "Hi! What can I do for you?", "Good to see you. What would you like to know?"]),
    ("general", ["Thank you!", "Thanks a lot.", "Thanks, that helps.", "Great, thank you."],
     ["You're welcome! Let me know if you have any other questions.", "Glad I could help.",
      "You're welcome. Have a nice day!"]),
    ("general", ["How are you?", "How are you today?"],
     ["I am doing well, thank you for asking. How can I help you?", "I am fine, thanks. What would you like to talk about?"]),
    ("general", ["What can you do?", "What can you help me with?", "Who are you?"],
     ["I am a small assistant that answers everyday questions, for example about cooking, gardening, weather, bikes and travel. Just ask, and I will do my best.",
      "I can answer simple questions, give practical tips and help with everyday problems. What do you need?"]),
    ("general", ["Goodbye!", "Bye, see you later.", "That is all for now."],
     ["Goodbye! Have a great day.", "See you later, take care!", "Thanks for chatting. Bye!"]),
    ("general", ["Tell me a joke.", "Can you tell me something funny?"],
     ["Why did the bicycle fall over? Because it was two tired.",
      "Why did the tomato turn red? Because it saw the salad dressing.",
      "What do you call a sleeping bull? A bulldozer."]),
    ("advice", ["How can I sleep better?", "I cannot fall asleep at night. Any tips?"],
     ["Go to bed and get up at the same time every day, and keep your bedroom dark and cool. Avoid screens and coffee in the evening.",
      "A regular bedtime, a quiet dark room and no caffeine after lunch help most people. A short walk during the day also makes it easier to sleep."]),
    ("advice", ["How can I save money?", "Any tips for saving money each month?"],
     ["Write down what you spend for a month to see where the money goes. Then set a small amount aside as soon as you are paid, before you spend the rest.",
      "Cook at home more often, cancel subscriptions you do not use and compare prices before big purchases. Small savings add up quickly."]),
    ("advice", ["How can I learn a new language?", "What is the best way to learn a language?"],
     ["Practise a little every day, even for ten minutes, rather than a lot once a week. Listening to simple podcasts and speaking with other people helps you improve faster.",
      "Learn the most common words first and use them in simple sentences. Regular practice and real conversations matter more than perfect grammar."]),
    ("advice", ["How do I stay focused while working?", "I keep getting distracted. What can I do?"],
     ["Work in blocks of about twenty-five minutes with a short break after each one. Put your phone in another room and close the tabs you do not need.",
      "Decide on one task, turn off notifications and set a timer. Short breaks help you keep your attention for longer."]),
    ("advice", ["How much water should I drink a day?", "Am I drinking enough water?"],
     ["Most adults need around one and a half to two litres a day, more in hot weather or when they exercise. Pale yellow urine is a good sign that you drink enough.",
      "A good rule is to drink a glass of water with each meal and whenever you feel thirsty. You need more on hot days."]),
    ("advice", ["How can I make friends in a new city?", "I just moved and I do not know anyone."],
     ["Join a club or a class for something you enjoy, like a cycling group, a choir or a cooking course. Seeing the same people every week makes it easy to start talking.",
      "Say yes to invitations, talk to your neighbours and try local groups or volunteering. Friendships take time, so be patient with yourself."]),
    ("advice", ["How do I prepare for a job interview?", "I have a job interview tomorrow. Any advice?"],
     ["Read about the company, think of two or three examples from your work that show your skills, and prepare a few questions of your own. Get a good night's sleep and arrive a little early.",
      "Practise answering common questions out loud and plan your route so you arrive on time. Be honest and friendly, and listen carefully to each question."]),
    ("advice", ["How can I get more exercise?", "I want to be more active. Where do I start?"],
     ["Start small: walk or cycle for short trips and take the stairs instead of the lift. Thirty minutes of movement most days makes a big difference.",
      "Pick something you enjoy, like cycling, swimming or dancing, so you keep doing it. Begin with short sessions and slowly make them longer."]),
    ("advice", ["How do I keep my home tidy?", "Any tips for a cleaner flat?"],
     ["Spend ten minutes each evening putting things back where they belong. Give everything a fixed place, and deal with post and dishes straight away.",
      "Small daily habits work better than a big clean once a month. Clear one surface at a time and get rid of things you no longer use."]),
]

FIXED_INTENTS = BIKE_INTENTS + COOKING_INTENTS + WEATHER_INTENTS + GARDEN_INTENTS + SUPPORT_INTENTS + GENERAL_INTENTS

TOPIC_SYSTEMS = {
    "bike": ["You are a friendly cycling assistant.", "You help people with their bikes."],
    "travel": ["You are a travel assistant for city trips.", "You help people get around town."],
    "cooking": ["You are a friendly cooking assistant.", "You help people cook simple meals at home."],
    "weather": ["You answer questions about the weather."],
    "garden": ["You are a gardening assistant.", "You give practical gardening advice."],
    "support": ["You are the customer support assistant for {company}, {kind}.",
                "You help customers of {company}."],
    "general": ["You are a friendly assistant."],
    "advice": ["You give short, practical advice."],
    "animals": ["You answer questions about animals."],
    "words": ["You explain everyday words."],
}

QUESTION_OPENERS = ["", "", "", "", "", "Hi, ", "Hello, ", "Quick question: ", "Excuse me, ", "Hey, "]
# Generic follow-ups that users add to a statement ("My order has not arrived yet.").
# Spread over all topics, they teach the model to answer the content, not the tail.
STATEMENT_TAILS = ["What can I do?", "What should I do?", "Can you help?", "Can you help me?",
                   "Any ideas?", "Any advice?", "What do you suggest?"]
QUESTION_TAILS = ["Thanks!", "Thank you.", "Thanks in advance."]


# --------------------------------------------------------------------------- question/answer pairs


def fixed_pair(rng: random.Random) -> tuple[str, str, str]:
    """A (topic, question, answer) from the hand-written intents."""
    topic, questions, answers = rng.choice(FIXED_INTENTS)
    company = rng.choice(list(COMPANIES))
    question = expand(rng, rng.choice(questions), company=company)
    answer = expand(rng, rng.choice(answers), company=company)
    return topic, question, answer


def dish_pair(rng: random.Random) -> tuple[str, str, str]:
    """A question about one dish: how to make it, what goes in it, how long it takes."""
    dish = rng.choice(DISHES)
    kind = rng.randrange(3)
    if kind == 0:
        question = expand(rng, "[How do I make|How do you make|Can you tell me how to make|What is a simple way to make] {d}?", d=dish.name)
        steps = pick_some(rng, list(dish.steps), 2, 3)
        answer = cap(steps[0]) + ", then " + ", and then ".join(steps[1:]) + ". " + dish.serve
    elif kind == 1:
        question = expand(rng, "[What do I need to make|What ingredients go into|What goes into] {d}?", d=dish.name)
        answer = f"For {dish.short} you need {join_list(list(dish.ingredients))}. " + rng.choice(
            [dish.serve, f"It takes about {dish.minutes} minutes from start to finish."])
    else:
        question = expand(rng, "How long does it take to make {d}?", d=dish.name)
        verb = "take" if dish.plural else "takes"
        pronoun = "They" if dish.plural else "It"
        answer = f"{cap(dish.short)} {verb} about {dish.minutes} minutes. {pronoun} {'are' if dish.plural else 'is'} " + rng.choice(
            ["not hard to make.", "a good choice for a weekday.", "worth the wait."])
    return "cooking", question, answer


def plant_pair(rng: random.Random) -> tuple[str, str, str]:
    """A question about growing one plant."""
    plant = rng.choice(PLANTS)
    them = "them" if plant.plural else "it"
    they = "they" if plant.plural else "it"
    kind = rng.randrange(4)
    if kind == 0:
        question = expand(rng, "[When should I plant|When is the best time to plant|When do I sow] {p}?", p=plant.name)
        answer = f"Plant {plant.name} {plant.sow}. {plant.tip}"
    elif kind == 1:
        question = expand(rng, "[How do I grow|How can I grow|Any tips for growing] {p}?", p=plant.name)
        answer = f"Give {them} {plant.sun} and {plant.water}. {plant.tip}"
    elif kind == 2:
        question = rng.choice([f"How often should I water {plant.name}?", f"How much water do {plant.name} need?"
                               if plant.plural else f"How much water does {plant.name} need?"])
        answer = f"For {plant.name}, {plant.water}. " + cap(f"{they} {'grow' if plant.plural else 'grows'} best in {plant.sun}.")
    else:
        question = expand(rng, "When can I harvest [my |]{p}?", p=plant.name)
        answer = f"You can usually pick {plant.name} {plant.harvest}. {plant.tip}"
    return "garden", question, answer


def weather_pair(rng: random.Random) -> tuple[str, str, str]:
    """What to wear or do in a given kind of weather."""
    w = rng.choice(WEATHER)
    question = rng.choice([f"What should I wear when it is {w.word}?", f"What should I wear on a {w.word} day?",
                           f"Any tips for a {w.word} day?", f"How should I dress when it is {w.word}?"])
    advice = rng.sample(list(w.advice), 2)
    return "weather", question, " ".join(advice)


def animal_pair(rng: random.Random) -> tuple[str, str, str]:
    """Sounds, food and homes of animals."""
    name, plural, sound, food, home, fact = rng.choice(ANIMALS)
    kind = rng.randrange(4)
    article = "an" if name[0] in "aeiou" else "a"
    if kind == 0:
        question = f"What sound does {article} {name} make?"
        answer = f"{article.capitalize()} {name} {sound}. {fact}"
    elif kind == 1:
        question = f"What do {plural} eat?"
        answer = f"{cap(plural)} eat {food}. {fact}"
    elif kind == 2:
        question = f"Where do {plural} live?"
        answer = f"{cap(plural)} live {home}. They eat {food}."
    else:
        question = expand(rng, "[Tell me something about|Can you tell me a fact about|What is interesting about] {p}?", p=plural)
        answer = f"{fact} {cap(plural)} live {home}."
    return "animals", question, answer


def word_pair(rng: random.Random) -> tuple[str, str, str]:
    """Definitions, colours and opposites."""
    kind = rng.randrange(3)
    if kind == 0:
        word, definition = rng.choice(THINGS)
        article = "an" if word[0] in "aeiou" else "a"
        question = rng.choice([f"What is {article} {word}?", f"What is the meaning of the word \"{word}\"?",
                               f"Can you explain what {article} {word} is?"])
        answer = f"{cap(article)} {word} is {definition}."
    elif kind == 1:
        thing, colour = rng.choice(COLOURS)
        question = f"What colour is {thing}?"
        answer = f"{cap(thing)} is {colour}."
    else:
        word, opposite = rng.choice(OPPOSITES)
        if rng.random() < 0.5:
            word, opposite = opposite, word
        question = expand(rng, "What is the opposite of [|the word ]\"{w}\"?", w=word)
        answer = f"The opposite of \"{word}\" is \"{opposite}\"."
    return "words", question, answer


def calendar_pair(rng: random.Random) -> tuple[str, str, str]:
    """Order of days and months."""
    if rng.random() < 0.5:
        i = rng.randrange(7)
        if rng.random() < 0.5:
            return "words", f"What day comes after {DAYS[i]}?", f"The day after {DAYS[i]} is {DAYS[(i + 1) % 7]}."
        return "words", f"What day comes before {DAYS[i]}?", f"The day before {DAYS[i]} is {DAYS[(i - 1) % 7]}."
    i = rng.randrange(12)
    if rng.random() < 0.6:
        return "words", f"Which month comes after {MONTHS[i]}?", f"{MONTHS[(i + 1) % 12]} comes after {MONTHS[i]}."
    n = i + 1
    return "words", f"What is the {ordinal(n)} month of the year?", f"The {ordinal(n)} month of the year is {MONTHS[i]}."


def degrees(n: int) -> str:
    """'1 degree', '-3 degrees'."""
    return f"{n} degree" if n == 1 else f"{n} degrees"


def ordinal(n: int) -> str:
    """first, second, ... twelfth."""
    return ["first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth",
            "ninth", "tenth", "eleventh", "twelfth"][n - 1]


PAIR_MAKERS = [
    (fixed_pair, 10), (dish_pair, 3), (plant_pair, 3), (weather_pair, 2),
    (animal_pair, 2), (word_pair, 2), (calendar_pair, 1),
]


def random_pair(rng: random.Random) -> tuple[str, str, str]:
    """Pick a question/answer maker by weight and run it."""
    makers = [m for m, _ in PAIR_MAKERS]
    weights = [w for _, w in PAIR_MAKERS]
    return rng.choices(makers, weights=weights)[0](rng)


def add_tail(rng: random.Random, topic: str, question: str) -> str:
    """Often follow a statement with a generic request for help; rarely thank in advance."""
    if topic == "general":
        return question
    if question.endswith(".") and rng.random() < 0.5:
        return f"{question} {rng.choice(STATEMENT_TAILS)}"
    if question.endswith("?") and rng.random() < 0.05:
        return f"{question} {rng.choice(QUESTION_TAILS)}"
    return question


def decorate_question(rng: random.Random, topic: str, question: str) -> str:
    """Sometimes put a short greeting in front of the question or a tail after it."""
    question = add_tail(rng, topic, question)
    opener = rng.choice(QUESTION_OPENERS)
    if not opener or topic == "general":
        return question
    return opener + lower_first(question)


# --------------------------------------------------------------------------- chat documents


def render_chatml(messages: list[tuple[str, str]]) -> str:
    """Render (role, content) messages as ChatML turns."""
    return "".join(f"<|im_start|>{role}\n{content}<|im_end|>\n" for role, content in messages)


def system_prompt(rng: random.Random, topic: str) -> str:
    """Mostly the default system prompt, sometimes one that fits the topic."""
    if rng.random() < 0.75 or topic not in TOPIC_SYSTEMS:
        return DEFAULT_SYSTEM
    company = rng.choice(list(COMPANIES))
    return expand(rng, rng.choice(TOPIC_SYSTEMS[topic]), company=company, kind=COMPANIES[company])


def chat_document(rng: random.Random) -> str:
    """One conversation: a system turn and one to three user/assistant exchanges."""
    topic, question, answer = random_pair(rng)
    messages = [("system", system_prompt(rng, topic)), ("user", decorate_question(rng, topic, question)), ("assistant", answer)]
    turns = rng.choices([1, 2, 3], weights=[6, 3, 1])[0]
    _, thanks_questions, thanks_answers = GENERAL_INTENTS[1]
    for _ in range(turns - 1):
        if rng.random() < 0.25:
            messages += [("user", rng.choice(thanks_questions)), ("assistant", rng.choice(thanks_answers))]
            break
        topic, question, answer = random_pair(rng)
        question = add_tail(rng, topic, question)
        lead = rng.choice(["", "", "And ", "Thanks. ", "One more thing: ", "Also, "])
        follow_up = lead + lower_first(question) if lead and not lead.endswith(". ") else lead + question
        messages += [("user", follow_up), ("assistant", answer)]
    return render_chatml(messages)


# --------------------------------------------------------------------------- prose documents


def story_document(rng: random.Random) -> str:
    """A short everyday story about one person."""
    name = rng.choice(NAMES)
    he = PEOPLE[name]
    his = POSSESSIVE[he]
    friend = rng.choice([n for n in NAMES if n != name])
    day = rng.choice(DAYS)
    town = rng.choice(TOWNS)
    w = rng.choice(WEATHER[:2] + WEATHER[3:6])
    kind = rng.randrange(5)
    s = dict(name=name, he=he, He=cap(he), his=his, His=cap(his), him=OBJECT[he], friend=friend,
             day=day, town=town, weather=w.word, mild="mild" if w.low >= 8 else "cool")
    opening = expand(rng, "[On {day} morning|One {day} in {town}|Last {day}], {name} [woke up|got up] [early|at seven|before the alarm]. [Outside it was {weather}.|It was a {weather} day in {town}.|The day was {weather} and {mild}.]", **s)
    if kind == 0:
        dish = rng.choice(DISHES)
        s.update(dish=dish.name, short=dish.short, ing=join_list(list(dish.ingredients[:3])), step=dish.steps[0], step2=dish.steps[-1])
        body = [
            "{name} had invited {friend} for [lunch|dinner] and wanted to make {dish}.",
            "[{He} walked to the market|{He} cycled to the shop on the corner|{He} went to the small shop near {his} flat] to buy {ing}.",
            "Back home, {he} [put on the radio|opened the kitchen window|tied on an apron] and began to {step}.",
            "[The kitchen soon smelled wonderful.|It took a little longer than {he} expected.|Everything went to plan.]",
            "Finally, {he} had to {step2}.",
            "When {friend} arrived, [the table was ready|the food was still warm|{name} was just washing the last pan].",
            "[They ate slowly and talked for hours.|{friend} asked for the recipe.|They agreed to cook together again next week.]",
        ]
    elif kind == 1:
        body = [
            "{name} [wanted to|decided to|had promised {friend} to] cycle to the lake outside {town}.",
            "{He} [checked the tyres|pumped up the tyres|oiled the chain] and packed [a bottle of water|a sandwich and an apple|a rain jacket, just in case].",
            "The first part of the route followed [a quiet cycle lane|the river path|a long avenue of trees].",
            "[At the bridge|Near the old mill|At the edge of town], {he} met {friend}, who was waiting with {his2} bike.",
            "[The road climbed slowly through the fields.|They rode side by side and talked.|A light wind blew against them.]",
            "[At the lake they sat on the grass and ate lunch.|They swam for a few minutes in the cold water.|They watched the boats for a while.]",
            "In the evening {name} rode home, tired but happy.",
        ]
        s["his2"] = POSSESSIVE[PEOPLE[friend]]
    elif kind == 2:
        plant = rng.choice(PLANTS)
        s.update(plant=plant.name, water=plant.water, tip=plant.tip.rstrip(".").lower())
        body = [
            "{name} spent the [morning|afternoon|day] in {his} garden.",
            "[{He} pulled out the weeds along the path.|First {he} raked the dry leaves into a pile.|{He} turned the soil with a spade.]",
            "This year {he} wanted to grow {plant}.",
            "[A neighbour had told {him}|{He} had read in a book|{His} grandmother always said] that the trick was to {water}.",
            "[{He} also remembered one more piece of advice:|There was one more thing to remember:] {tip}.",
            "[By lunchtime {his} back hurt, but the bed looked neat and ready.|When {he} finished, the sun was low over the roofs.|{He} wrote the date on a small label and pushed it into the soil.]",
        ]
    elif kind == 3:
        company = rng.choice(list(COMPANIES))
        s.update(company=company, kind=COMPANIES[company])
        body = [
            "{name} had a problem with {company}, {kind}.",
            "[A parcel {he} had ordered was late.|{His} bill was higher than usual.|{He} could not log in to {his} account.]",
            "{He} [called the support line|wrote a message to customer service|opened the chat on the website].",
            "[A friendly agent answered after a few minutes.|The wait was long, but the agent was kind.|The answer came the same afternoon.]",
            "[The agent checked {his} account and explained what had happened.|The agent apologised and fixed the problem.|The agent asked for {his} order number and looked it up.]",
            "[By the evening everything was sorted out.|{name} thanked the agent and closed the chat.|{He} was glad it had been so easy.]",
        ]
    else:
        s["dest"] = rng.choice(["the museum", "the old town", "the station", "a friend's flat", "the library", "the market"])
        body = [
            "{name} had to get across {town} to {dest}.",
            "[{He} took the tram from the stop outside {his} building.|{He} walked to the bus stop and checked the timetable.|{He} borrowed a shared bike from the rack on the corner.]",
            "[The journey took about twenty minutes.|The streets were busy, but {he} was not in a hurry.|On the way {he} passed the river and the big bridge.]",
            "[{He} looked out of the window at the shops and cafes.|{He} listened to music and watched the city go by.|At one crossing {he} had to wait for a long line of cars.]",
            "When {he} arrived at {dest}, {friend} was already there.",
            "[They laughed about how late {name} was.|They went inside together.|They made plans for the weekend.]",
        ]
    sentences = [opening] + [expand(rng, t, **s) for t in body]
    return " ".join(cap(x) for x in sentences) + "\n"


def recipe_document(rng: random.Random) -> str:
    """A recipe written as prose or as a numbered list."""
    dish = rng.choice(DISHES)
    title = expand(rng, "[How to make {d}|{D}|A simple recipe for {d}|Making {d} at home]", d=dish.name, D=cap(dish.short))
    intro = expand(rng, "[This is an easy recipe.|This recipe is simple and cheap.|You can make this on a weekday evening.|This dish is a family favourite.] It takes about {m} minutes.", m=dish.minutes)
    ingredients = "You will need " + join_list(list(dish.ingredients)) + "."
    if rng.random() < 0.5:
        steps = "\n".join(f"{i}. {cap(step)}." for i, step in enumerate(dish.steps, 1))
        return f"{title}\n\n{intro} {ingredients}\n\n{steps}\n\n{dish.serve}\n"
    words = ["First", "Next", "Then", "Finally"]
    body = " ".join(f"{words[i] if i < 3 else words[3]}, {step}." for i, step in enumerate(dish.steps))
    return f"{title}\n\n{intro} {ingredients} {body} {dish.serve}\n"


def garden_document(rng: random.Random) -> str:
    """A short growing guide for one plant."""
    p = rng.choice(PLANTS)
    they = "they" if p.plural else "it"
    them = "them" if p.plural else "it"
    grow = "grow" if p.plural else "grows"
    parts = [
        expand(rng, "[Growing {p}|How to grow {p}|A guide to {p}]", p=p.name),
        "",
        expand(rng, "[{P} are easy to grow in a garden or in pots.|Many gardeners like to grow {p}.|{P} are a good choice for a new gardener.]", p=p.name, P=cap(p.name)).replace(" are ", " is " if not p.plural else " are "),
        f"Plant {them} {p.sow}. {cap(they)} {grow} best in {p.sun}, so choose the spot with care.",
        f"To keep {them} healthy, {p.water}.",
        f"You can harvest or enjoy {them} {p.harvest}.",
        p.tip,
    ]
    return parts[0] + "\n\n" + " ".join(parts[2:]) + "\n"


def weather_report_document(rng: random.Random) -> str:
    """A local weather report for one or two days."""
    town = rng.choice(TOWNS)
    lines = [expand(rng, "[Weather for {town}|The forecast for {town}|{town} weather]", town=town), ""]
    start = rng.randrange(7)
    for offset in range(rng.randint(1, 3)):
        w = rng.choice(WEATHER)
        low = rng.randint(w.low, (w.low + w.high) // 2)
        high = rng.randint(low + 2, w.high + 2)
        day = DAYS[(start + offset) % 7]
        text = expand(
            rng,
            "{day} will bring {sky}. [Temperatures will start at {low} and rise to {high} in the afternoon.|In the morning it will be about {low}, with highs of {high} in the afternoon.|Expect a low of {low} and a high of {high}.] {detail} {advice}",
            day=day, sky=list(w.sky), low=degrees(low), high=degrees(high), detail=list(w.detail), advice=list(w.advice),
        )
        lines.append(text)
    return "\n".join(lines) + "\n"


def support_transcript_document(rng: random.Random) -> str:
    """A plain-text support chat between a customer and a company's virtual assistant."""
    company = rng.choice(list(COMPANIES))
    lines = [f"Support chat with {company}", "",
             "Assistant: " + expand(rng, "[Hello, I am the {c} virtual assistant. How can I help?|Hi, you are chatting with the {c} help bot. What can I do for you?|Good morning and welcome to {c} support. What can I help you with?]", c=company)]
    topic, questions, answers = rng.choice(SUPPORT_INTENTS)
    lines.append("Customer: " + expand(rng, rng.choice(questions), company=company))
    lines.append("Assistant: " + expand(rng, rng.choice(answers), company=company))
    if rng.random() < 0.6:
        _, questions, answers = rng.choice(SUPPORT_INTENTS)
        question = expand(rng, rng.choice(questions), company=company)
        lead = rng.choice(["Thanks. ", "Okay. ", "I see. ", "Thanks. And "])
        lines.append("Customer: " + lead + (lower_first(question) if lead.endswith("And ") else question))
        lines.append("Assistant: " + expand(rng, rng.choice(answers), company=company))
    lines.append("Customer: " + rng.choice(["Thank you, that helps.", "Great, thanks for your help.", "Okay, thank you."]))
    lines.append("Assistant: " + rng.choice(["You're welcome. Have a nice day!", "Happy to help. Goodbye!", "You're welcome, take care."]))
    return "\n".join(lines) + "\n"


def qa_list_document(rng: random.Random) -> str:
    """A short FAQ with Q: and A: lines."""
    title = rng.choice(["Questions and answers", "Frequently asked questions", "FAQ", "Common questions"])
    pairs = [random_pair(rng) for _ in range(rng.randint(2, 5))]
    body = "\n\n".join(f"Q: {q}\nA: {a}" for _, q, a in pairs)
    return f"{title}\n\n{body}\n"


def note_document(rng: random.Random) -> str:
    """A short note or email between two people."""
    sender, to = rng.sample(NAMES, 2)
    day = rng.choice(DAYS)
    town = rng.choice(TOWNS)
    w = rng.choice(WEATHER)
    body = expand(
        rng,
        "[Hi|Dear|Hello] {to},\n\n[Thank you for your message.|I hope you are well.|It was lovely to see you last week.] "
        "[Are you free on {day}?|Shall we meet on {day}?|I will be in {town} on {day}.] "
        "[We could cycle to the lake if the weather is good.|I thought we could cook dinner together.|There is a market in the old town that I would like to show you.] "
        "[The forecast says it will be {weather}, so|I heard it might be {weather}, so] [bring a jacket.|dress for the weather.|we can change our plans if we need to.]\n\n"
        "[See you soon,|Best wishes,|Love,|Take care,]\n{sender}",
        to=to, sender=sender, day=day, town=town, weather=w.word,
    )
    return body + "\n"


def town_document(rng: random.Random) -> str:
    """A description of getting around a (fictional) town."""
    town = rng.choice(TOWNS)
    minutes = rng.choice([5, 6, 8, 10, 12, 15])
    lines = rng.randint(2, 6)
    text = expand(
        rng,
        "[Getting around {town}|Travel in {town}|{town} by bike and tram]\n\n"
        "{town} is a [small|medium-sized|busy|quiet] town [on a river|by the sea|in a green valley|at the foot of the hills]. "
        "[There are {lines} tram lines, and the trams run every {min} minutes during the day.|Buses run every {min} minutes from the station to the centre.|The main tram line crosses the town from north to south every {min} minutes.] "
        "[Tickets can be bought in the app or from machines at the stops.|A day ticket is good value if you plan several trips.|Children under six travel for free.] "
        "[Cycling is popular, and there are cycle lanes on most main roads.|Many people cycle, because the centre is flat and compact.|A bike-sharing scheme has stations near the station and the market square.] "
        "[The old town is best explored on foot.|On Saturdays the market square is closed to cars.|From the bridge you can see the whole old town.]",
        town=town, lines=NUMBER_WORDS[lines], min=minutes,
    )
    return text + "\n"


def bike_guide_document(rng: random.Random) -> str:
    """A few bike or travel tips strung together as an article."""
    intents = rng.sample(BIKE_INTENTS, rng.randint(2, 4))
    title = rng.choice(["Tips for city cyclists", "Looking after your bike", "A few cycling tips", "Cycling in town"])
    paragraphs = []
    for _, questions, answers in intents:
        paragraphs.append(expand(rng, rng.choice(questions)) + " " + expand(rng, rng.choice(answers)))
    return title + "\n\n" + "\n\n".join(paragraphs) + "\n"


def animal_document(rng: random.Random) -> str:
    """A short paragraph about one animal."""
    name, plural, sound, food, home, fact = rng.choice(ANIMALS)
    article = "An" if name[0] in "aeiou" else "A"
    return expand(
        rng,
        "[About {p}|{P}|Facts about {p}]\n\n{P} live {home}. They eat {food}. {A} {n} {sound} [when it wants attention|to talk to others|now and then]. {fact}\n",
        p=plural, P=cap(plural), home=home, food=food, A=article, n=name, sound=sound, fact=fact,
    )


PROSE_MAKERS = [
    (story_document, 6), (recipe_document, 3), (garden_document, 2), (weather_report_document, 2),
    (support_transcript_document, 3), (qa_list_document, 3), (note_document, 2), (town_document, 1),
    (bike_guide_document, 2), (animal_document, 1),
]


# --------------------------------------------------------------------------- corpus


def generate_documents(seed: int = DEFAULT_SEED, target_bytes: int = DEFAULT_TARGET_BYTES) -> list[str]:
    """Generate unique documents until the corpus reaches target_bytes (UTF-8), about
    CHAT_SHARE of them chat conversations, then shuffle them. Deterministic in seed."""
    rng = random.Random(seed)
    seen: set[str] = set()
    chat: list[str] = []
    prose: list[str] = []
    chat_bytes = prose_bytes = 0
    makers = [m for m, _ in PROSE_MAKERS]
    weights = [w for _, w in PROSE_MAKERS]
    chat_target = int(target_bytes * CHAT_SHARE)
    misses = 0
    while chat_bytes < chat_target or prose_bytes < target_bytes - chat_target:
        want_chat = chat_bytes < chat_target and (prose_bytes >= target_bytes - chat_target or rng.random() < CHAT_SHARE)
        doc = chat_document(rng) if want_chat else rng.choices(makers, weights=weights)[0](rng)
        if doc in seen:
            misses += 1
            if misses > 1_000_000:
                raise RuntimeError("templates cannot fill the target size without repeats")
            continue
        seen.add(doc)
        check_document(doc)
        if want_chat:
            chat.append(doc)
            chat_bytes += len(doc.encode("utf-8"))
        else:
            prose.append(doc)
            prose_bytes += len(doc.encode("utf-8"))
    documents = chat + prose
    rng.shuffle(documents)
    return documents


def check_document(doc: str) -> None:
    """Reject leftovers of templating and the phrases reserved for the LoRA demo."""
    lowered = doc.lower()
    for phrase in FORBIDDEN_PHRASES:
        if phrase in lowered:
            raise ValueError(f"forbidden phrase {phrase!r} in: {doc!r}")
    if re.search(r"[\[\]{}|]", doc.replace("<|im_start|>", "").replace("<|im_end|>", "")):
        raise ValueError(f"unexpanded template in: {doc!r}")
    if "  " in doc or " ." in doc or " ," in doc:
        raise ValueError(f"spacing problem in: {doc!r}")


def is_chat(doc: str) -> bool:
    """Whether a document is a ChatML conversation."""
    return doc.startswith("<|im_start|>")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="text file to write")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--target-bytes", type=int, default=DEFAULT_TARGET_BYTES)
    args = parser.parse_args()
    documents = generate_documents(args.seed, args.target_bytes)
    args.out.write_text(f"\n{END_OF_TEXT}\n".join(documents), encoding="utf-8")
    chat_bytes = sum(len(d.encode()) for d in documents if is_chat(d))
    total = sum(len(d.encode()) for d in documents)
    print(f"{len(documents)} documents, {total} bytes, {chat_bytes / total:.0%} chat -> {args.out}")


if __name__ == "__main__":
    main()
