Feature: The token guards the API
  With JESSY_API_TOKEN set on jessy-core and jessy-api, every /api/v1 request needs
  "Authorization: Bearer <token>". The gateway refuses the others itself, with a 401
  problem+json, before they reach jessy-core. /api/health stays open.

  Background:
    Given a running Jessy with the gateway in front, both requiring the token "bdd-s3cret"
    And the key "secret" holds "classified"

  Scenario: A user without a token is refused
    Given I send no token
    When I get the key "secret"
    Then the answer is 401 with the problem code "unauthorized"
    And the answer asks for a bearer token
    And the refusal came from the gateway, not from jessy-core
    When I put "overwritten" under the key "secret"
    Then the answer is 401 with the problem code "unauthorized"

  Scenario: A user with a wrong token is refused
    Given I send the token "guessed"
    When I get the key "secret"
    Then the answer is 401 with the problem code "unauthorized"
    And the answer says the token is invalid
    And the refusal came from the gateway, not from jessy-core

  Scenario: A user with the token is served
    Given I send the token "bdd-s3cret"
    When I put "still classified" under the key "secret"
    Then the answer is 204 with an ETag
    When I get the key "secret"
    Then the answer is 200
    And the value is "still classified"

  Scenario: The health check needs no token
    Given I send no token
    When I ask the gateway for its health
    Then the answer is 200
    And the gateway says it is healthy

  Scenario: jessy-core checks the token too
    Given I send no token
    When I get the key "secret" from jessy-core directly
    Then the answer is 401 with the problem code "unauthorized"
