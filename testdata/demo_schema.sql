-- The demo schema: a small shop whose customers table holds PII.
CREATE TABLE customers (
    id          serial PRIMARY KEY,
    name        text NOT NULL,
    email       text NOT NULL,
    phone       text,
    ssn         text,
    card_number text,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE orders (
    id          serial PRIMARY KEY,
    customer_id int NOT NULL REFERENCES customers(id),
    amount      numeric(10,2) NOT NULL,
    status      text NOT NULL DEFAULT 'paid',
    placed_at   timestamptz NOT NULL DEFAULT now()
);

INSERT INTO customers (name, email, phone, ssn, card_number) VALUES
    ('Alice Example', 'alice@example.com', '+1-202-555-0101', '123-45-6789', '4111111111111111'),
    ('Bob Sample',    'bob@example.org',   '+1-202-555-0102', '234-56-7890', '5500005555555559'),
    ('Carol Test',    'carol@example.net', '+1-202-555-0103', '345-67-8901', '340000000000009'),
    ('Dan Demo',      'dan@example.com',   '+1-202-555-0104', '456-78-9012', '6011000000000004');

INSERT INTO orders (customer_id, amount, status)
SELECT 1 + (g % 4), round((random() * 200)::numeric, 2), CASE WHEN g % 7 = 0 THEN 'refunded' ELSE 'paid' END
FROM generate_series(1, 40) AS g;
